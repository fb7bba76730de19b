! The hand adjoint of Lorenz-96 with classical RK4 in Fortran: backend ``fortran``, model ``lorenz96``.
!
! The recipe and the arithmetic of python/adjointbench/models/lorenz96_equations.py (paper §2.2,
! eqs. 16-19): the forward sweep stores the states x_0..x_{s_K} only (integrated to the last
! observation step); the backward sweep recomputes the RK4 stage inputs of step n from x_n,
!     x2 = x + dt/2 k1,  x3 = x + dt/2 k2,  x4 = x + dt k3,
! and walks ``step``'s lines backwards (``step_adjoint``):
!     b4 = dt/6 a            g4 = (df/dx)^T(x4) b4
!     b3 = dt/3 a + dt g4    g3 = (df/dx)^T(x3) b3
!     b2 = dt/3 a + dt/2 g3  g2 = (df/dx)^T(x2) b2
!     b1 = dt/6 a + dt/2 g2  g1 = (df/dx)^T(x)  b1
!     a <- a + g1 + g2 + g3 + g4,    F-bar += sum_i (b1 + b2 + b3 + b4)_i
! with ((df/dx)^T b)_j = b_{j-1} x_{j-2} - b_{j+2} x_{j+1} + b_{j+1} (x_{j+2} - x_{j-1}) - b_j
! (``rhs_adjoint``), adding dJ/dx_{s_k} = (x_{s_k}[idx] - y_k) / sigma_o^2 at each observed step
! (eq. 18, first term) and the background's (x_0 - xb) / sigma_b^2 at the end.
!
! Every elementwise line is NumPy's, operation for operation and in the same order (Fortran
! evaluates operators of equal precedence left to right, as NumPy's expressions do; gfortran
! does not reassociate without -ffast-math; the build passes -ffp-contract=off so that no
! target fuses a*b + c): the forward sweep, hence J's terms and the trajectory, and the
! update of a are those of the NumPy equations to the bit.  Only the reductions differ, by
! rounding: NumPy sums pairwise, here the sums run in index order (J's terms, as the Cython
! kernel sums them), and F-bar is collected entry-wise over the whole sweep, S_i += (b1 + b2 +
! b3 + b4)_i, then summed once at the end (a scalar running sum is a loop-carried dependency
! that keeps the compiler from vectorising the last pass).
!
! Loops over the ring have no modulo: the entries whose stencil wraps around (i = 0, 1, N-1
! for f; j = 0, 1, N-2, N-1 for its transpose) are peeled off and the interior runs on plain
! offsets (the adjoint's entries are one call of a small pure procedure, which gfortran -O3
! inlines); the stage combinations are whole-array statements on the tendency vector.
!
! The C interface (iso_c_binding): every routine is bind(c), scalars by value, arrays of
! explicit shape whose sizes come first.  The caller (python/adjointbench/backends/
! fortran_hand.py) checks every size and index before a call; a routine only checks that the
! control is finite and returns a status: 0 ok, 1 a control entry is NaN or infinite.
! Layout: states are columns, X(0:n-1, 0:nstates-1) (a C-contiguous (nstates, n) array);
! obs(nidx, nobs) (C-contiguous (nobs, nidx)); steps (int64, strictly increasing, steps(nobs) =
! nlast) and idx (int64, 0-based, strictly increasing in 0..n-1); the control u(0:nc-1) is
! x_0, then F when nc = n + 1 (control "state+params").  has_xb = 0: no background term (xb
! is not read).  W(0:n-1, NWORK) holds the sweep vectors (the cost needs 4 of them).
module ab_lorenz96
   use, intrinsic :: iso_c_binding, only: c_char, c_double, c_int, c_int64_t, c_null_char
   use, intrinsic :: iso_fortran_env, only: compiler_options, compiler_version
   !$ use omp_lib, only: omp_get_thread_num, omp_get_max_threads
   implicit none
   private
   public :: ab96_value_and_grad, ab96_cost, ab96_descent, ab96_batch, ab96_cost_batch, ab96_nwork
   public :: ab_openmp, ab_max_threads, ab_abi_version, ab_compiler

   integer, parameter :: dp = c_double, ik = c_int64_t
   !: vectors of length N besides the trajectory: a, x2, x3, x4, b3, b2, b1, g4, g3, g2, S (F-bar)
   integer(ik), parameter :: NWORK = 11
   integer(ik), parameter :: A_ = 1, X2_ = 2, X3_ = 3, X4_ = 4, B3_ = 5, B2_ = 6, B1_ = 7, &
                             G4_ = 8, G3_ = 9, G2_ = 10, S_ = 11

   !: the problem's scalars, gathered once per call from the C arguments
   type :: problem96
      integer(ik) :: n, nlast, nobs, nidx
      logical :: background, params
      real(dp) :: sigma_b, inv_o2, dt, F
   end type problem96

contains

   ! ---- the model: the tendency and one RK4 step ---------------------------------------

   pure real(dp) function tend(xp1, xm2, xm1, x, F)
      ! f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F (Lorenz 1996), as ``rhs``.
      real(dp), intent(in) :: xp1, xm2, xm1, x, F
      tend = (xp1 - xm2)*xm1 - x + F
   end function tend

   pure subroutine tendency(n, y, F, k)
      ! k = f(y) on the ring (``rhs``); the entries whose stencil wraps around are peeled off.
      integer(ik), intent(in) :: n
      real(dp), intent(in) :: y(0:n - 1), F
      real(dp), intent(out) :: k(0:n - 1)
      integer(ik) :: i
      k(0) = tend(y(1), y(n - 2), y(n - 1), y(0), F)
      k(1) = tend(y(2), y(n - 1), y(0), y(1), F)
      do i = 2, n - 2
         k(i) = tend(y(i + 1), y(i - 2), y(i - 1), y(i), F)
      end do
      k(n - 1) = tend(y(0), y(n - 3), y(n - 2), y(n - 1), F)
   end subroutine tendency

   pure subroutine rk4(n, x, xnext, acc, ya, yb, k, F, dt)
      ! x_{n+1} = x + dt/6 (((k1 + 2 k2) + 2 k3) + k4), k1 = f(x), k2 = f(x + dt/2 k1),
      ! k3 = f(x + dt/2 k2), k4 = f(x + dt k3): ``step``'s operations, in its order; acc, ya,
      ! yb, k are scratch (acc the running sum of the k's, ya and yb the stage inputs).
      integer(ik), intent(in) :: n
      real(dp), intent(in) :: x(0:n - 1), F, dt
      real(dp), intent(inout) :: xnext(0:n - 1), acc(0:n - 1), ya(0:n - 1), yb(0:n - 1), k(0:n - 1)
      call tendency(n, x, F, acc)            ! k1
      ya = x + (0.5_dp*dt)*acc               ! x2
      call tendency(n, ya, F, k)             ! k2
      acc = acc + 2.0_dp*k
      yb = x + (0.5_dp*dt)*k                 ! x3
      call tendency(n, yb, F, k)             ! k3
      acc = acc + 2.0_dp*k
      ya = x + dt*k                          ! x4
      call tendency(n, ya, F, k)             ! k4
      xnext = x + (dt/6.0_dp)*(acc + k)
   end subroutine rk4

   pure subroutine stage_inputs(n, x, k, x2, x3, x4, F, dt)
      ! The stage inputs of one step, recomputed from x as ``step_adjoint`` does (the forward
      ! sweep's bits): x2 = x + dt/2 f(x), x3 = x + dt/2 f(x2), x4 = x + dt f(x3); k scratch.
      integer(ik), intent(in) :: n
      real(dp), intent(in) :: x(0:n - 1), F, dt
      real(dp), intent(inout) :: k(0:n - 1), x2(0:n - 1), x3(0:n - 1), x4(0:n - 1)
      call tendency(n, x, F, k)
      x2 = x + (0.5_dp*dt)*k
      call tendency(n, x2, F, k)
      x3 = x + (0.5_dp*dt)*k
      call tendency(n, x3, F, k)
      x4 = x + dt*k
   end subroutine stage_inputs

   ! ---- the transpose of one RK4 step (``step_adjoint``) ------------------------------

   pure real(dp) function adj(bm1, bp2, bp1, b0, xm2, xp1, xp2, xm1)
      ! ((df/dx)^T b)_j from b_{j-1}, b_{j+2}, b_{j+1}, b_j and x_{j-2}, x_{j+1}, x_{j+2}, x_{j-1}:
      ! x_j enters f_{j-1} as x_{i+1}, f_{j+2} as -x_{i-2}, f_{j+1} as x_{i-1} and f_j as -x_i.
      real(dp), intent(in) :: bm1, bp2, bp1, b0, xm2, xp1, xp2, xm1
      adj = bm1*xm2 - bp2*xp1 + bp1*(xp2 - xm1) - b0
   end function adj

   pure subroutine adj_entry(j, m2, m1, p1, p2, x, b, sb, a, ca, cg, gout, bout)
      ! At entry j (neighbours m2 = j-2, m1 = j-1, p1 = j+1, p2 = j+2 on the ring):
      ! g = (df/dx)^T(x) (sb b), gout_j = g, bout_j = ca a_j + cg g.
      integer(ik), intent(in) :: j, m2, m1, p1, p2
      real(dp), intent(in) :: x(0:*), b(0:*), sb, a(0:*), ca, cg
      real(dp), intent(inout) :: gout(0:*), bout(0:*)
      real(dp) :: g
      g = adj(sb*b(m1), sb*b(p2), sb*b(p1), sb*b(j), x(m2), x(p1), x(p2), x(m1))
      gout(j) = g
      bout(j) = ca*a(j) + cg*g
   end subroutine adj_entry

   pure subroutine adj_stage(n, x, b, sb, a, ca, cg, gout, bout)
      ! One stage of ``step_adjoint`` over the ring: gout = (df/dx)^T(x) (sb b) and the next
      ! stage's bout = ca a + cg gout.  sb = dt/6 with b = a computes b4 = dt/6 a on the fly
      ! (the same products NumPy stores); sb = 1 otherwise.
      integer(ik), intent(in) :: n
      real(dp), intent(in) :: x(0:n - 1), b(0:n - 1), sb, a(0:n - 1), ca, cg
      real(dp), intent(inout) :: gout(0:n - 1), bout(0:n - 1)
      integer(ik) :: j
      call adj_entry(0_ik, n - 2, n - 1, 1_ik, 2_ik, x, b, sb, a, ca, cg, gout, bout)
      call adj_entry(1_ik, n - 1, 0_ik, 2_ik, 3_ik, x, b, sb, a, ca, cg, gout, bout)
      do j = 2, n - 3
         call adj_entry(j, j - 2, j - 1, j + 1, j + 2, x, b, sb, a, ca, cg, gout, bout)
      end do
      call adj_entry(n - 2, n - 4, n - 3, n - 1, 0_ik, x, b, sb, a, ca, cg, gout, bout)
      call adj_entry(n - 1, n - 3, n - 2, 0_ik, 1_ik, x, b, sb, a, ca, cg, gout, bout)
   end subroutine adj_stage

   pure subroutine last_entry(j, m2, m1, p1, p2, x, b1, b2, b3, g2, g3, g4, c6, params, S, a)
      ! At entry j: g1 = (df/dx)^T(x) b1, S_j += ((b1 + b2) + b3) + b4 (b4 = dt/6 a_j, before the
      ! update) when F is a control, then a_j = (((a_j + g1) + g2) + g3) + g4 (``step_adjoint``).
      integer(ik), intent(in) :: j, m2, m1, p1, p2
      real(dp), intent(in) :: x(0:*), b1(0:*), b2(0:*), b3(0:*), g2(0:*), g3(0:*), g4(0:*), c6
      logical, intent(in) :: params
      real(dp), intent(inout) :: S(0:*), a(0:*)
      real(dp) :: g1
      g1 = adj(b1(m1), b1(p2), b1(p1), b1(j), x(m2), x(p1), x(p2), x(m1))
      if (params) S(j) = S(j) + (b1(j) + b2(j) + b3(j) + c6*a(j))
      a(j) = a(j) + g1 + g2(j) + g3(j) + g4(j)
   end subroutine last_entry

   pure subroutine adj_last(n, x, b1, b2, b3, g2, g3, g4, c6, params, S, a)
      ! The last stage of ``step_adjoint``: a <- a + g1 + g2 + g3 + g4 (in place: this pass
      ! reads a only at j), and F-bar's entries.
      integer(ik), intent(in) :: n
      real(dp), intent(in) :: x(0:n - 1), b1(0:n - 1), b2(0:n - 1), b3(0:n - 1), g2(0:n - 1), &
                              g3(0:n - 1), g4(0:n - 1), c6
      logical, intent(in) :: params
      real(dp), intent(inout) :: S(0:n - 1), a(0:n - 1)
      integer(ik) :: j
      call last_entry(0_ik, n - 2, n - 1, 1_ik, 2_ik, x, b1, b2, b3, g2, g3, g4, c6, params, S, a)
      call last_entry(1_ik, n - 1, 0_ik, 2_ik, 3_ik, x, b1, b2, b3, g2, g3, g4, c6, params, S, a)
      do j = 2, n - 3
         call last_entry(j, j - 2, j - 1, j + 1, j + 2, x, b1, b2, b3, g2, g3, g4, c6, params, S, a)
      end do
      call last_entry(n - 2, n - 4, n - 3, n - 1, 0_ik, x, b1, b2, b3, g2, g3, g4, c6, params, S, a)
      call last_entry(n - 1, n - 3, n - 2, 0_ik, 1_ik, x, b1, b2, b3, g2, g3, g4, c6, params, S, a)
   end subroutine adj_last

   ! ---- the cost: the forward sweep and J ----------------------------------------------

   function sweep(p, steps, idx, obs, u, nx, X, acc, ya, yb, k4, store) result(Jo)
      ! The forward sweep from x_0 = u(0:n-1) to x_nlast; returns sum_k sum_j e_kj^2 (k, then j)
      ! with e_kj = x_{s_k}[idx_j] - y_kj.  store: state n in X(:, n) (nx = nlast + 1); else
      ! only the current state is kept, alternating in X(:, 0:1) (nx = 2).  acc, ya, yb, k4:
      ! rk4's scratch.
      type(problem96), intent(in) :: p
      integer(ik), intent(in) :: steps(p%nobs), idx(p%nidx), nx
      real(dp), intent(in) :: obs(p%nidx, p%nobs), u(0:p%n)
      real(dp), intent(inout) :: X(0:p%n - 1, 0:nx - 1), acc(0:p%n - 1), ya(0:p%n - 1), yb(0:p%n - 1), &
                                 k4(0:p%n - 1)
      logical, intent(in) :: store
      real(dp) :: Jo, e, F
      integer(ik) :: n, k, j, cur, nxt
      F = p%F
      if (p%params) F = u(p%n)
      X(:, 0) = u(0:p%n - 1)
      Jo = 0.0_dp
      k = 1
      n = 0
      cur = 0
      do
         if (k <= p%nobs) then
            if (steps(k) == n) then
               do j = 1, p%nidx
                  e = X(idx(j), cur) - obs(j, k)
                  Jo = Jo + e*e
               end do
               k = k + 1
            end if
         end if
         if (n == p%nlast) exit
         if (store) then
            nxt = n + 1
         else
            nxt = 1 - cur
         end if
         call rk4(p%n, X(:, cur), X(:, nxt), acc, ya, yb, k4, F, p%dt)
         cur = nxt
         n = n + 1
      end do
   end function sweep

   function finish(p, Jo, x0, xb, a, grad) result(J)
      ! J = 1/2 Jo / sigma_o^2 + 1/2 sum_j ((x0_j - xb_j) / sigma_b)^2 [background]; grad:
      ! a_j + (x0_j - xb_j) / sigma_b^2 (the background's dJ/dx_0, as NumPy adds it).
      type(problem96), intent(in) :: p
      real(dp), intent(in) :: Jo, x0(0:p%n - 1), xb(0:p%n - 1)
      real(dp), intent(inout) :: a(0:p%n - 1)
      logical, intent(in) :: grad
      real(dp) :: J, Jb, e
      integer(ik) :: i
      J = 0.5_dp*p%inv_o2*Jo
      if (p%background) then
         Jb = 0.0_dp
         do i = 0, p%n - 1
            e = (x0(i) - xb(i))/p%sigma_b
            Jb = Jb + e*e
            if (grad) a(i) = a(i) + e/p%sigma_b
         end do
         J = J + 0.5_dp*Jb
      end if
   end function finish

   function cost96(p, steps, idx, obs, xb, u, X, W) result(J)
      ! J alone: ``sweep`` keeping only the current state (X: 2 states, W: 4 vectors), then
      ! ``finish``: the gradient's forward sweep and J to the last bit.
      type(problem96), intent(in) :: p
      integer(ik), intent(in) :: steps(p%nobs), idx(p%nidx)
      real(dp), intent(in) :: obs(p%nidx, p%nobs), xb(0:p%n - 1), u(0:p%n)
      real(dp), intent(inout) :: X(0:p%n - 1, 0:1), W(0:p%n - 1, 4)
      real(dp) :: J, Jo
      Jo = sweep(p, steps, idx, obs, u, 2_ik, X, W(:, 1), W(:, 2), W(:, 3), W(:, 4), .false.)
      J = finish(p, Jo, u(0:p%n - 1), xb, W(:, 1), .false.)
   end function cost96

   ! ---- the gradient: forward sweep, then eqs. (16-19) backwards --------------------------

   pure subroutine innovation(p, n, k, steps, idx, obs, xn, a)
      ! eq. (18), first term: at an observed step n = steps(k), a[idx] += (x_n[idx] - y_k) / sigma_o^2
      ! (NumPy's inv_o2 * innov[k]); k moves down.
      type(problem96), intent(in) :: p
      integer(ik), intent(in) :: n
      integer(ik), intent(inout) :: k
      integer(ik), intent(in) :: steps(p%nobs), idx(p%nidx)
      real(dp), intent(in) :: obs(p%nidx, p%nobs), xn(0:p%n - 1)
      real(dp), intent(inout) :: a(0:p%n - 1)
      integer(ik) :: i
      if (k < 1) return
      if (steps(k) /= n) return
      do i = 1, p%nidx
         a(idx(i)) = a(idx(i)) + p%inv_o2*(xn(idx(i)) - obs(i, k))
      end do
      k = k - 1
   end subroutine innovation

   function vg96(p, steps, idx, obs, xb, u, X, W, grad) result(J)
      ! J and grad = dJ/du (dJ/dx_0, then dJ/dF for control "state+params"; grad(0:nc-1)).
      ! X: the trajectory, (nlast + 1) states; W: NWORK vectors (columns A_ .. S_).
      type(problem96), intent(in) :: p
      integer(ik), intent(in) :: steps(p%nobs), idx(p%nidx)
      real(dp), intent(in) :: obs(p%nidx, p%nobs), xb(0:p%n - 1), u(0:p%n)
      real(dp), intent(inout) :: X(0:p%n - 1, 0:p%nlast), W(0:p%n - 1, NWORK)
      real(dp), intent(out) :: grad(0:p%n)
      real(dp) :: J, Jo, F, dt, h, c6, c3, dF
      integer(ik) :: n, k, i, nn
      nn = p%n
      F = p%F
      if (p%params) F = u(nn)
      dt = p%dt
      h = 0.5_dp*dt
      c6 = dt/6.0_dp
      c3 = dt/3.0_dp
      Jo = sweep(p, steps, idx, obs, u, p%nlast + 1, X, W(:, B3_), W(:, B2_), W(:, B1_), W(:, G4_), .true.)
      W(:, A_) = 0.0_dp
      if (p%params) W(:, S_) = 0.0_dp
      k = p%nobs
      do n = p%nlast, 1, -1  ! the time loop reversed (step 0's innovation after it)
         call innovation(p, n, k, steps, idx, obs, X(:, n), W(:, A_))
         ! the stage inputs of step n - 1 -> n, recomputed from the stored state x_{n-1}
         ! (scratch: b1's column, free until adj_stage writes it)
         associate (xn => X(:, n - 1))
            call stage_inputs(nn, xn, W(:, B1_), W(:, X2_), W(:, X3_), W(:, X4_), F, dt)
            ! ``step_adjoint``'s lines, backwards
            call adj_stage(nn, W(:, X4_), W(:, A_), c6, W(:, A_), c3, dt, W(:, G4_), W(:, B3_))   ! g4, b3
            call adj_stage(nn, W(:, X3_), W(:, B3_), 1.0_dp, W(:, A_), c3, h, W(:, G3_), W(:, B2_)) ! g3, b2
            call adj_stage(nn, W(:, X2_), W(:, B2_), 1.0_dp, W(:, A_), c6, h, W(:, G2_), W(:, B1_)) ! g2, b1
            call adj_last(nn, xn, W(:, B1_), W(:, B2_), W(:, B3_), W(:, G2_), W(:, G3_), W(:, G4_), c6, &
                          p%params, W(:, S_), W(:, A_))
         end associate
      end do
      call innovation(p, 0_ik, k, steps, idx, obs, X(:, 0), W(:, A_))
      J = finish(p, Jo, X(:, 0), xb, W(:, A_), .true.)
      grad(0:nn - 1) = W(:, A_)
      if (p%params) then
         dF = 0.0_dp
         do i = 0, nn - 1
            dF = dF + W(i, S_)
         end do
         grad(nn) = dF
      end if
   end function vg96

   ! ---- the C interface -----------------------------------------------------------------

   pure logical function finite(c, nc)
      ! All entries finite: |c| <= huge is false for NaN and for +-Inf.
      integer(ik), intent(in) :: nc
      real(dp), intent(in) :: c(nc)
      finite = all(abs(c) <= huge(1.0_dp))
   end function finite

   type(problem96) function gather(n, nlast, nobs, nidx, has_xb, sigma_b, sigma_o, dt, F, nc) result(p)
      integer(c_int64_t), intent(in) :: n, nlast, nobs, nidx, nc
      integer(c_int), intent(in) :: has_xb
      real(c_double), intent(in) :: sigma_b, sigma_o, dt, F
      p%n = n
      p%nlast = nlast
      p%nobs = nobs
      p%nidx = nidx
      p%background = has_xb /= 0
      p%params = nc == n + 1
      p%sigma_b = sigma_b
      p%inv_o2 = 1.0_dp/(sigma_o*sigma_o)
      p%dt = dt
      p%F = F
   end function gather

   integer(c_int) function ab96_nwork() bind(c, name="ab96_nwork")
      ! Sweep vectors of length n that ``W`` must hold for the gradient (the cost needs 4).
      ab96_nwork = int(NWORK, c_int)
   end function ab96_nwork

   integer(c_int) function ab96_value_and_grad(n, nobs, steps, nidx, idx, obs, has_xb, xb, sigma_b, sigma_o, &
                                               dt, F, nc, u, nstates, X, W, grad, J) bind(c, name="ab96_value_and_grad")
      ! J and grad(1:nc) at control u(1:nc) (u and grad hold n + 1 doubles whatever nc: no
      ! automatic arrays, which at large n would overflow a thread's stack); X (nstates =
      ! steps(nobs) + 1 states) and W (NWORK vectors) are work arrays.  Status 0, or 1 (u not
      ! finite).
      integer(c_int64_t), value :: n, nobs, nidx, nc, nstates
      integer(c_int64_t), intent(in) :: steps(nobs), idx(nidx)
      real(c_double), intent(in) :: obs(nidx, nobs), xb(n), u(n + 1)
      integer(c_int), value :: has_xb
      real(c_double), value :: sigma_b, sigma_o, dt, F
      real(c_double), intent(inout) :: X(n, nstates), W(n, NWORK)
      real(c_double), intent(out) :: grad(n + 1), J
      type(problem96) :: p
      ab96_value_and_grad = 1
      if (.not. finite(u, nc)) return
      p = gather(n, nstates - 1, nobs, nidx, has_xb, sigma_b, sigma_o, dt, F, nc)
      J = vg96(p, steps, idx, obs, xb, u, X, W, grad)
      ab96_value_and_grad = 0
   end function ab96_value_and_grad

   integer(c_int) function ab96_cost(n, nobs, steps, nidx, idx, obs, has_xb, xb, sigma_b, sigma_o, &
                                     dt, F, nc, u, nlast, X, W, J) bind(c, name="ab96_cost")
      ! Forward-only J at control u(1:nc) (u holds n + 1 doubles); X (2 states) and W (4
      ! vectors) are work arrays.  Status 0, or 1 (u not finite).
      integer(c_int64_t), value :: n, nobs, nidx, nc, nlast
      integer(c_int64_t), intent(in) :: steps(nobs), idx(nidx)
      real(c_double), intent(in) :: obs(nidx, nobs), xb(n), u(n + 1)
      integer(c_int), value :: has_xb
      real(c_double), value :: sigma_b, sigma_o, dt, F
      real(c_double), intent(inout) :: X(n, 2), W(n, 4)
      real(c_double), intent(out) :: J
      type(problem96) :: p
      ab96_cost = 1
      if (.not. finite(u, nc)) return
      p = gather(n, nlast, nobs, nidx, has_xb, sigma_b, sigma_o, dt, F, nc)
      J = cost96(p, steps, idx, obs, xb, u, X, W)
      ab96_cost = 0
   end function ab96_cost

   integer(c_int) function ab96_descent(n, nobs, steps, nidx, idx, obs, has_xb, xb, sigma_b, sigma_o, &
                                        dt, F, nc, u, nstates, X, W, grad, iterations, step, costs) &
      bind(c, name="ab96_descent")
      ! The Tbl. 3 loop fused: u <- u - step * grad, ``iterations`` evaluations of ``vg96``;
      ! u(1:nc) holds u_0 on entry and the final control on exit, costs the J of each iterate
      ! (the iterates of base.python_descent with ab96_value_and_grad, bit for bit); u and
      ! grad hold n + 1 doubles, grad is scratch (the last gradient on exit).
      integer(c_int64_t), value :: n, nobs, nidx, nc, nstates, iterations
      integer(c_int64_t), intent(in) :: steps(nobs), idx(nidx)
      real(c_double), intent(in) :: obs(nidx, nobs), xb(n)
      integer(c_int), value :: has_xb
      real(c_double), value :: sigma_b, sigma_o, dt, F, step
      real(c_double), intent(inout) :: u(n + 1), X(n, nstates), W(n, NWORK), grad(n + 1)
      real(c_double), intent(out) :: costs(iterations)
      type(problem96) :: p
      integer(ik) :: i
      ab96_descent = 1
      if (.not. finite(u, nc)) return
      p = gather(n, nstates - 1, nobs, nidx, has_xb, sigma_b, sigma_o, dt, F, nc)
      do i = 1, iterations
         costs(i) = vg96(p, steps, idx, obs, xb, u, X, W, grad)
         u(1:nc) = u(1:nc) - step*grad(1:nc)
      end do
      ab96_descent = 0
   end function ab96_descent

   integer(c_int) function ab96_batch(n, nobs, steps, nidx, idx, obs, has_xb, xb, sigma_b, sigma_o, &
                                      dt, F, nc, nstates, nthreads, X, W, nb, U, J, G) bind(c, name="ab96_batch")
      ! J(b), G(:, b) at the controls U(:, b), b = 1..nb (U a C-contiguous (nb, nc) array), on up
      ! to nthreads OpenMP threads; thread t works in X(:, t) (a trajectory) and W(:, t) (NWORK
      ! vectors and a control).  A row is exactly what ab96_value_and_grad gives for it (the same
      ! ``vg96``).  Without OpenMP the rows run in order on the calling thread.  Status 0, or 1
      ! (a row not finite; its J and G undefined).
      integer(c_int64_t), value :: n, nobs, nidx, nc, nstates, nthreads, nb
      integer(c_int64_t), intent(in) :: steps(nobs), idx(nidx)
      real(c_double), intent(in) :: obs(nidx, nobs), xb(n), U(nc, nb)
      integer(c_int), value :: has_xb
      real(c_double), value :: sigma_b, sigma_o, dt, F
      real(c_double), intent(inout) :: X(n*nstates, nthreads), W(n*(NWORK + 2) + 2, nthreads)
      real(c_double), intent(out) :: J(nb), G(nc, nb)
      type(problem96) :: p
      integer(ik) :: b, t, cu, cg
      integer(c_int) :: bad
      integer :: nt
      bad = 0
      p = gather(n, nstates - 1, nobs, nidx, has_xb, sigma_b, sigma_o, dt, F, nc)
      nt = int(max(1_ik, min(nthreads, nb)))
      cu = n*NWORK + 1          ! the thread's control, n + 1 doubles
      cg = cu + n + 1           ! and its gradient, n + 1 doubles
      ! rows of milliseconds: one at a time to whichever thread is free
      !$omp parallel do num_threads(nt) schedule(dynamic, 1) private(b, t) reduction(max:bad)
      do b = 1, nb
         t = 1
         !$ t = omp_get_thread_num() + 1
         if (finite(U(:, b), nc)) then
            W(cu:cu + nc - 1, t) = U(:, b)
            J(b) = vg96(p, steps, idx, obs, xb, W(cu, t), X(1, t), W(1, t), W(cg, t))
            G(:, b) = W(cg:cg + nc - 1, t)
         else
            bad = 1
         end if
      end do
      !$omp end parallel do
      ab96_batch = bad
   end function ab96_batch

   integer(c_int) function ab96_cost_batch(n, nobs, steps, nidx, idx, obs, has_xb, xb, sigma_b, sigma_o, &
                                           dt, F, nc, nlast, nthreads, X, W, nb, U, J) bind(c, name="ab96_cost_batch")
      ! Forward-only J(b) at the controls U(:, b), b = 1..nb, on up to nthreads OpenMP threads, as
      ! ab96_batch runs the gradients (the same idiom: the batch's cheap-gradient ratio is like by
      ! like); thread t works in X(:, t) (2 states) and W(:, t) (4 vectors and a control of n + 1
      ! doubles).  A row is exactly what ab96_cost gives for it (the same ``cost96``).  Status 0,
      ! or 1 (a row not finite; its J undefined).
      integer(c_int64_t), value :: n, nobs, nidx, nc, nlast, nthreads, nb
      integer(c_int64_t), intent(in) :: steps(nobs), idx(nidx)
      real(c_double), intent(in) :: obs(nidx, nobs), xb(n), U(nc, nb)
      integer(c_int), value :: has_xb
      real(c_double), value :: sigma_b, sigma_o, dt, F
      real(c_double), intent(inout) :: X(2*n, nthreads), W(5*n + 1, nthreads)
      real(c_double), intent(out) :: J(nb)
      type(problem96) :: p
      integer(ik) :: b, t, cu
      integer(c_int) :: bad
      integer :: nt
      bad = 0
      p = gather(n, nlast, nobs, nidx, has_xb, sigma_b, sigma_o, dt, F, nc)
      nt = int(max(1_ik, min(nthreads, nb)))
      cu = 4*n + 1              ! the thread's control, n + 1 doubles
      !$omp parallel do num_threads(nt) schedule(dynamic, 1) private(b, t) reduction(max:bad)
      do b = 1, nb
         t = 1
         !$ t = omp_get_thread_num() + 1
         if (finite(U(:, b), nc)) then
            W(cu:cu + nc - 1, t) = U(:, b)
            J(b) = cost96(p, steps, idx, obs, xb, W(cu, t), X(1, t), W(1, t))
         else
            bad = 1
         end if
      end do
      !$omp end parallel do
      ab96_cost_batch = bad
   end function ab96_cost_batch

   ! ---- what the library was built with ------------------------------------------------

   integer(c_int) function ab_openmp() bind(c, name="ab_openmp")
      ! 1 when compiled with OpenMP (the batches run on threads), else 0.
      ab_openmp = 0
      !$ ab_openmp = 1
   end function ab_openmp

   integer(c_int) function ab_max_threads() bind(c, name="ab_max_threads")
      ! OpenMP's default team size (OMP_NUM_THREADS or the CPUs), 1 without OpenMP.
      ab_max_threads = 1
      !$ ab_max_threads = int(omp_get_max_threads(), c_int)
   end function ab_max_threads

   integer(c_int) function ab_abi_version() bind(c, name="ab_abi_version")
      ! Bumped whenever a signature changes: the loader refuses a stale library.
      ab_abi_version = 3
   end function ab_abi_version

   integer(c_int) function ab_compiler(which, buf, nbuf) bind(c, name="ab_compiler")
      ! The compiler's version (which = 0) or options (which = 1) as a NUL-terminated string in
      ! buf(nbuf), cut to nbuf - 1 characters; returns the full length.
      integer(c_int), value :: which, nbuf
      character(kind=c_char), intent(out) :: buf(nbuf)
      character(len=*), parameter :: VERSION = compiler_version(), OPTIONS = compiler_options()
      integer :: i, m
      if (which == 0) then
         m = min(len(VERSION), nbuf - 1)
         do i = 1, m
            buf(i) = VERSION(i:i)
         end do
         ab_compiler = len(VERSION)
      else
         m = min(len(OPTIONS), nbuf - 1)
         do i = 1, m
            buf(i) = OPTIONS(i:i)
         end do
         ab_compiler = len(OPTIONS)
      end if
      buf(m + 1) = c_null_char
   end function ab_compiler

end module ab_lorenz96
