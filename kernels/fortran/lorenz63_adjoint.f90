! The hand adjoint of paper List 1 (Lorenz-63, forward Euler) in Fortran: backend ``fortran``.
!
! List 1 (eq. 20 by forward Euler) and List 2 (its adjoint, built by the recipe of paper §2.2,
! eqs. 16-19) line by line as python/adjointbench/model.py and hand_adjoint.py write them,
! with the same operations in the same order, so that the numbers are those of the Python
! (and the Cython) hand adjoint to the last bit: the trajectory is integrated only to the last
! observation step, J and dJ/dw are taken there, and the backward sweep adds the innovation
! when it reaches an observed step (eq. 18, first term) and accumulates the parameter
! adjoints (eq. 19).  Fortran evaluates operators of equal precedence left to right, as
! Python does; gfortran does not reassociate floating point without -ffast-math, and the
! build turns off FMA contraction (-ffp-contract=off) so that no target fuses a*b + c.
! The Lagrange multipliers are three scalars, not one vector per step: only v_0 is needed.
!
! The C interface (iso_c_binding): every routine is bind(c), scalars by value, arrays of
! explicit shape whose sizes come first.  The caller (python/adjointbench/backends/
! fortran_hand.py) checks every size before a call; a routine only checks that the control is
! finite and returns a status: 0 ok, 1 a control entry is NaN or infinite.
!
! Array layout: the trajectory w(3, 0:nlast) is stored flat (w(:, n) = w_n, the layout of a
! C-contiguous (nstates, 3) array), d(3, nobs) holds dJ/dw at the observed steps, obs(3, nobs)
! the observations (a C-contiguous (nobs, 3) array), steps(nobs) the observed steps (int64,
! strictly increasing, steps(nobs) = nstates - 1).  The control c(1:6) is (x0, y0, z0, sigma,
! r, beta); for control "state" (nc = 3) the fixed parameters are appended from fixed(3).
module ab_lorenz63
   use, intrinsic :: iso_c_binding, only: c_double, c_int, c_int64_t
   !$ use omp_lib, only: omp_get_thread_num
   implicit none
   private
   public :: ab63_value_and_grad, ab63_cost, ab63_descent, ab63_batch, ab63_cost_batch

   integer, parameter :: dp = c_double, ik = c_int64_t

contains

   ! ---- the model: List 1 -----------------------------------------------------------------

   pure subroutine advance(x, y, z, sigma, r, beta, dt, out)
      ! One step of List 1: out = w_{n+1} from w_n = (x, y, z) (by value: out may be w_n).
      real(dp), value :: x, y, z
      real(dp), intent(in) :: sigma, r, beta, dt
      real(dp), intent(out) :: out(3)
      out(1) = x + dt*sigma*(-x + y)
      out(2) = y + dt*(-x*z + r*x - y)
      out(3) = z + dt*(x*y - beta*z)
   end subroutine advance

   pure logical function finite(c, nc)
      ! All entries finite: |c| <= huge is false for NaN and for +-Inf.
      integer(ik), intent(in) :: nc
      real(dp), intent(in) :: c(nc)
      finite = all(abs(c) <= huge(1.0_dp))
   end function finite

   pure subroutine full_control(nc, u, fixed, c)
      ! c(1:6) = u, with the fixed (sigma, r, beta) appended for control "state".
      integer(ik), intent(in) :: nc
      real(dp), intent(in) :: u(nc), fixed(3)
      real(dp), intent(out) :: c(6)
      c(4:6) = fixed  ! overwritten by u(4:6) for control "state+params"
      c(1:nc) = u
   end subroutine full_control

   ! ---- the cost, forward only --------------------------------------------------------------

   pure function cost63(nobs, steps, obs, c, dt) result(J)
      ! J alone (model.cost): List 1 on the current state only, nothing stored.  The same
      ! ``advance`` as the gradient's forward sweep and J summed in the same order (over k,
      ! then x, y, z), so it equals the J of ``vg63`` to the last bit.
      integer(ik), intent(in) :: nobs
      integer(ik), intent(in) :: steps(nobs)
      real(dp), intent(in) :: obs(3, nobs), c(6), dt
      real(dp) :: J, s(3), e
      integer(ik) :: n, k, i
      s = c(1:3)
      J = 0.0_dp
      k = 1
      n = 0
      do
         if (steps(k) == n) then  ! k <= nobs: steps is strictly increasing and ends at nlast
            do i = 1, 3
               e = s(i) - obs(i, k)
               J = J + 0.5_dp*e*e
            end do
            if (k == nobs) exit
            k = k + 1
         end if
         call advance(s(1), s(2), s(3), c(4), c(5), c(6), dt, s)
         n = n + 1
      end do
   end function cost63

   ! ---- the gradient: List 1 forward, then List 2 -----------------------------------------

   function vg63(nobs, steps, obs, nstates, w, d, c, dt, g) result(J)
      ! J and g = dJ/d(x0, y0, z0, sigma, r, beta) (hand_adjoint.value_and_grad).
      integer(ik), intent(in) :: nobs, nstates
      integer(ik), intent(in) :: steps(nobs)
      real(dp), intent(in) :: obs(3, nobs), c(6), dt
      real(dp), intent(inout) :: w(3, 0:nstates - 1), d(3, nobs)
      real(dp), intent(out) :: g(6)
      real(dp) :: J, e, x, y, z, sigma, r, beta
      real(dp) :: ax, ay, az, as, ar, ab, bx, by, bz
      integer(ik) :: n, k, i, nlast
      sigma = c(4)
      r = c(5)
      beta = c(6)
      nlast = steps(nobs)
      w(:, 0) = c(1:3)
      do n = 0, nlast - 1  ! List 1 (model.forward)
         call advance(w(1, n), w(2, n), w(3, n), sigma, r, beta, dt, w(:, n + 1))
      end do
      J = 0.0_dp
      do k = 1, nobs
         do i = 1, 3
            e = w(i, steps(k)) - obs(i, k)
            d(i, k) = e  ! dJ/dw_{s_k}
            J = J + 0.5_dp*e*e
         end do
      end do
      ax = 0.0_dp
      ay = 0.0_dp
      az = 0.0_dp
      as = 0.0_dp
      ar = 0.0_dp
      ab = 0.0_dp
      k = nobs
      do n = nlast, 1, -1  ! List 2: the time loop reversed (step 0's innovation after it)
         call innovation(n, k, nobs, steps, d, ax, ay, az)
         x = w(1, n - 1)
         y = w(2, n - 1)
         z = w(3, n - 1)
         ! adjoint of List 1 line 3 (z), then line 2 (y), then line 1 (x); eq. (19) for the parameters
         ab = ab - dt*z*az
         bz = (1.0_dp - dt*beta)*az
         by = dt*x*az
         bx = dt*y*az
         ar = ar + dt*x*ay
         bz = bz - dt*x*ay
         by = by + (1.0_dp - dt)*ay
         bx = bx + dt*(-z + r)*ay
         as = as + dt*(-x + y)*ax
         by = by + sigma*dt*ax
         bx = bx + (1.0_dp - sigma*dt)*ax
         ax = bx
         ay = by
         az = bz
      end do
      call innovation(0_ik, k, nobs, steps, d, ax, ay, az)
      g(1) = ax
      g(2) = ay
      g(3) = az
      g(4) = as
      g(5) = ar
      g(6) = ab
   end function vg63

   pure subroutine innovation(n, k, nobs, steps, d, ax, ay, az)
      ! eq. (18), first term: at an observed step n = steps(k), add dJ/dw_n = d(:, k); k moves down.
      integer(ik), intent(in) :: n, nobs
      integer(ik), intent(inout) :: k
      integer(ik), intent(in) :: steps(nobs)
      real(dp), intent(in) :: d(3, nobs)
      real(dp), intent(inout) :: ax, ay, az
      if (k < 1) return
      if (steps(k) /= n) return
      ax = ax + d(1, k)
      ay = ay + d(2, k)
      az = az + d(3, k)
      k = k - 1
   end subroutine innovation

   ! ---- the C interface -----------------------------------------------------------------

   integer(c_int) function ab63_value_and_grad(nobs, steps, obs, nstates, w, d, nc, u, fixed, dt, grad, J) &
      bind(c, name="ab63_value_and_grad")
      ! J and grad(1:nc) at control u(1:nc); w and d are work arrays.  Status 0, or 1 (u not finite).
      integer(c_int64_t), value :: nobs, nstates, nc
      integer(c_int64_t), intent(in) :: steps(nobs)
      real(c_double), intent(in) :: obs(3, nobs), u(nc), fixed(3)
      real(c_double), intent(inout) :: w(3, nstates), d(3, nobs)
      real(c_double), value :: dt
      real(c_double), intent(out) :: grad(nc), J
      real(dp) :: c(6), g(6)
      ab63_value_and_grad = 1
      if (.not. finite(u, nc)) return
      call full_control(nc, u, fixed, c)
      J = vg63(nobs, steps, obs, nstates, w, d, c, dt, g)
      grad = g(1:nc)
      ab63_value_and_grad = 0
   end function ab63_value_and_grad

   integer(c_int) function ab63_cost(nobs, steps, obs, nc, u, fixed, dt, J) bind(c, name="ab63_cost")
      ! Forward-only J at control u(1:nc) (no work arrays).  Status 0, or 1 (u not finite).
      integer(c_int64_t), value :: nobs, nc
      integer(c_int64_t), intent(in) :: steps(nobs)
      real(c_double), intent(in) :: obs(3, nobs), u(nc), fixed(3)
      real(c_double), value :: dt
      real(c_double), intent(out) :: J
      real(dp) :: c(6)
      ab63_cost = 1
      if (.not. finite(u, nc)) return
      call full_control(nc, u, fixed, c)
      J = cost63(nobs, steps, obs, c, dt)
      ab63_cost = 0
   end function ab63_cost

   integer(c_int) function ab63_descent(nobs, steps, obs, nstates, w, d, nc, u, fixed, dt, iterations, step, costs) &
      bind(c, name="ab63_descent")
      ! The Tbl. 3 loop fused: u <- u - step * grad, ``iterations`` evaluations of ``vg63``;
      ! u(1:nc) holds u_0 on entry and the final control on exit, costs the J of each iterate
      ! (the iterates of base.python_descent with ab63_value_and_grad, bit for bit).
      integer(c_int64_t), value :: nobs, nstates, nc, iterations
      integer(c_int64_t), intent(in) :: steps(nobs)
      real(c_double), intent(in) :: obs(3, nobs), fixed(3)
      real(c_double), intent(inout) :: w(3, nstates), d(3, nobs), u(nc)
      real(c_double), value :: dt, step
      real(c_double), intent(out) :: costs(iterations)
      real(dp) :: c(6), g(6)
      integer(ik) :: i
      ab63_descent = 1
      if (.not. finite(u, nc)) return
      call full_control(nc, u, fixed, c)
      do i = 1, iterations
         costs(i) = vg63(nobs, steps, obs, nstates, w, d, c, dt, g)
         c(1:nc) = c(1:nc) - step*g(1:nc)
      end do
      u = c(1:nc)
      ab63_descent = 0
   end function ab63_descent

   integer(c_int) function ab63_batch(nobs, steps, obs, nstates, nthreads, w, d, nc, nb, U, fixed, dt, J, G) &
      bind(c, name="ab63_batch")
      ! J(b), G(:, b) at the controls U(:, b), b = 1..nb (U a C-contiguous (nb, nc) array), on up
      ! to nthreads OpenMP threads; thread t works in w(:, t), d(:, t).  A row is exactly what
      ! ab63_value_and_grad gives for it (the same ``vg63``).  Without OpenMP the rows run in
      ! order on the calling thread.  Status 0, or 1 (a row not finite; its J and G undefined).
      integer(c_int64_t), value :: nobs, nstates, nthreads, nc, nb
      integer(c_int64_t), intent(in) :: steps(nobs)
      real(c_double), intent(in) :: obs(3, nobs), U(nc, nb), fixed(3)
      real(c_double), intent(inout) :: w(3*nstates, nthreads), d(3*nobs, nthreads)
      real(c_double), value :: dt
      real(c_double), intent(out) :: J(nb), G(nc, nb)
      real(dp) :: c(6), g6(6)
      integer(ik) :: b, t, chunk
      integer(c_int) :: bad
      integer :: nt
      bad = 0
      nt = int(max(1_ik, min(nthreads, nb)))
      ! rows of a few microseconds: dynamic (a thread the OS preempts does not hold up its share),
      ! in chunks of about an eighth of a thread's share (few atomic claims)
      chunk = max(1_ik, nb/(8*nt))
      !$omp parallel do num_threads(nt) schedule(dynamic, chunk) private(b, t, c, g6) reduction(max:bad)
      do b = 1, nb
         t = 1
         !$ t = omp_get_thread_num() + 1
         if (finite(U(:, b), nc)) then
            call full_control(nc, U(:, b), fixed, c)
            J(b) = vg63(nobs, steps, obs, nstates, w(1, t), d(1, t), c, dt, g6)
            G(:, b) = g6(1:nc)
         else
            bad = 1
         end if
      end do
      !$omp end parallel do
      ab63_batch = bad
   end function ab63_batch

   integer(c_int) function ab63_cost_batch(nobs, steps, obs, nthreads, nc, nb, U, fixed, dt, J) &
      bind(c, name="ab63_cost_batch")
      ! Forward-only J(b) at the controls U(:, b), b = 1..nb, on up to nthreads OpenMP threads in
      ! ab63_batch's chunks (the same idiom); a row is exactly what ab63_cost gives for it (the
      ! same ``cost63``, its state on the thread's stack).  Status 0, or 1 (a row not finite).
      integer(c_int64_t), value :: nobs, nthreads, nc, nb
      integer(c_int64_t), intent(in) :: steps(nobs)
      real(c_double), intent(in) :: obs(3, nobs), U(nc, nb), fixed(3)
      real(c_double), value :: dt
      real(c_double), intent(out) :: J(nb)
      real(dp) :: c(6)
      integer(ik) :: b, chunk
      integer(c_int) :: bad
      integer :: nt
      bad = 0
      nt = int(max(1_ik, min(nthreads, nb)))
      chunk = max(1_ik, nb/(8*nt))
      !$omp parallel do num_threads(nt) schedule(dynamic, chunk) private(b, c) reduction(max:bad)
      do b = 1, nb
         if (finite(U(:, b), nc)) then
            call full_control(nc, U(:, b), fixed, c)
            J(b) = cost63(nobs, steps, obs, c, dt)
         else
            bad = 1
         end if
      end do
      !$omp end parallel do
      ab63_cost_batch = bad
   end function ab63_cost_batch

end module ab_lorenz63
