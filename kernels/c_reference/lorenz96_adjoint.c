/* The Lorenz-96 yardstick: a plain C hand adjoint of Lorenz (1996) with classical RK4,
 * compiled with gcc -O3 by adjointbench.c_reference and timed in C (no Python in the loop).
 *
 * The same recipe and the same arithmetic as the Cython kernel (kernels/lorenz96_hand.pyx)
 * and models/lorenz96_equations.py, so that a ratio to this program measures the tool, not the
 * algebra.  The forward sweep stores the states x_0..x_{s_K} (integrated only to the last
 * observation step); the backward sweep (paper §2.2, eqs. 16-19) recomputes the RK4 stage
 * inputs x2 = x + dt/2 k1, x3 = x + dt/2 k2, x4 = x + dt k3 of each step from the stored state
 * and walks the step's lines backwards:
 *     b4 = dt/6 a,  g4 = (df/dx)^T(x4) b4,   b3 = dt/3 a + dt g4,   g3 = (df/dx)^T(x3) b3,
 *     b2 = dt/3 a + dt/2 g3,  g2 = (df/dx)^T(x2) b2,   b1 = dt/6 a + dt/2 g2,  g1 = (df/dx)^T(x) b1,
 *     a <- a + g1 + g2 + g3 + g4,   F-bar += sum_i (b1 + b2 + b3 + b4)_i
 * with ((df/dx)^T b)_j = b_{j-1} x_{j-2} - b_{j+2} x_{j+1} + b_{j+1} (x_{j+2} - x_{j-1}) - b_j,
 * and adds dJ/dx_{s_k} = (x_{s_k}[idx] - y_k) / sigma_o^2 at each observed step (eq. 18).
 * Loops over the ring have no modulo: the entries whose stencil wraps around are peeled off.
 * Every input is read at run time so that the compiler cannot specialise on it.
 *
 * stdin (whitespace separated):
 *   n dt ncontrol F nobs nidx has_background sigma_o sigma_b repeats batch
 *   u_0 .. u_{ncontrol-1}              (x_0, then F when ncontrol = n + 1)
 *   idx_0 .. idx_{nidx-1}              (strictly increasing in 0..n-1)
 *   s_k y_k0 .. y_k(nidx-1)            (nobs lines, s_k strictly increasing, s_0 >= 0)
 *   xb_0 .. xb_{n-1}                   (only when has_background is 1)
 * stdout: one JSON object with J and grad (value_and_grad), J_cost (the forward-only cost),
 * the per-gradient time call_s and the per-cost time cost_s (each the min over `repeats`
 * batches of `batch` back-to-back calls).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    long n, nlast, nobs, nidx;
    const long *steps, *idx;
    const double *obs; /* nobs x nidx */
    const double *xb;  /* n, or NULL */
    double sigma_b, inv_o2, dt, F;
    int params; /* F is the control's last entry */
} problem_t;

enum { FIRST, MID, LAST, INPUT, ADJ4, ADJ32, ADJ1 };

static inline double tend(double xp1, double xm2, double xm1, double x, double F)
{
    return (xp1 - xm2) * xm1 - x + F; /* f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F */
}

static inline void put(int mode, long i, double k, const double *x, double *acc, double *out, double c)
{
    if (mode == FIRST) {
        acc[i] = k;
        out[i] = x[i] + c * k;
    } else if (mode == MID) {
        acc[i] = acc[i] + 2.0 * k;
        out[i] = x[i] + c * k;
    } else if (mode == LAST) {
        out[i] = x[i] + c * (acc[i] + k);
    } else {
        out[i] = x[i] + c * k;
    }
}

/* k = f(y), then put(); mode is a constant at every call, folded after inlining */
static inline void stage(int mode, const double *y, const double *x, double *acc, double *out, long N, double F,
                         double c)
{
    put(mode, 0, tend(y[1], y[N - 2], y[N - 1], y[0], F), x, acc, out, c);
    put(mode, 1, tend(y[2], y[N - 1], y[0], y[1], F), x, acc, out, c);
    for (long i = 2; i < N - 1; i++)
        put(mode, i, tend(y[i + 1], y[i - 2], y[i - 1], y[i], F), x, acc, out, c);
    put(mode, N - 1, tend(y[0], y[N - 3], y[N - 2], y[N - 1], F), x, acc, out, c);
}

static inline void rk4(const double *x, double *xnext, double *acc, double *ya, double *yb, long N, double F,
                       double dt)
{
    const double h = 0.5 * dt;
    stage(FIRST, x, x, acc, ya, N, F, h);
    stage(MID, ya, x, acc, yb, N, F, h);
    stage(MID, yb, x, acc, ya, N, F, dt);
    stage(LAST, ya, x, acc, xnext, N, F, dt / 6.0);
}

static inline double adj(double bm1, double bp2, double bp1, double b0, double xm2, double xp1, double xp2,
                         double xm1)
{
    return bm1 * xm2 - bp2 * xp1 + bp1 * (xp2 - xm1) - b0;
}

static inline void adj_put(int mode, long j, double g, double *a, double *T, double *bout, double *S, double ca,
                           double cg, double c6)
{
    if (mode == ADJ1) {
        a[j] = a[j] + g + T[j];
        return;
    }
    T[j] = mode == ADJ4 ? g : T[j] + g;
    const double b = ca * a[j] + cg * g;
    bout[j] = b;
    if (S) /* F-bar, entry-wise over the whole sweep */
        S[j] = mode == ADJ4 ? S[j] + c6 * a[j] + b : S[j] + b;
}

static inline void adj_at(int mode, long j, long N, const double *x, const double *b, double sb, double *a,
                          double *T, double *bout, double *S, double ca, double cg, double c6)
{
    const long m2 = j < 2 ? j - 2 + N : j - 2, m1 = j < 1 ? j - 1 + N : j - 1;
    const long p1 = j + 1 >= N ? j + 1 - N : j + 1, p2 = j + 2 >= N ? j + 2 - N : j + 2;
    adj_put(mode, j, adj(sb * b[m1], sb * b[p2], sb * b[p1], sb * b[j], x[m2], x[p1], x[p2], x[m1]), a, T, bout,
            S, ca, cg, c6);
}

static inline void adj_pass(int mode, const double *x, const double *b, double sb, double *a, double *T, double *bout,
                            double *S, long N, double ca, double cg, double c6)
{
    adj_at(mode, 0, N, x, b, sb, a, T, bout, S, ca, cg, c6);
    adj_at(mode, 1, N, x, b, sb, a, T, bout, S, ca, cg, c6);
    for (long j = 2; j < N - 2; j++)
        adj_put(mode, j, adj(sb * b[j - 1], sb * b[j + 2], sb * b[j + 1], sb * b[j], x[j - 2], x[j + 1], x[j + 2],
                             x[j - 1]),
                a, T, bout, S, ca, cg, c6);
    adj_at(mode, N - 2, N, x, b, sb, a, T, bout, S, ca, cg, c6);
    adj_at(mode, N - 1, N, x, b, sb, a, T, bout, S, ca, cg, c6);
}

#define NWORK 8 /* a, x2, x3, x4, bA, bB, T, S */

/* J and dJ/du into grad; X: (nlast + 1) n doubles, W: NWORK n.  noinline: timed as a library call. */
__attribute__((noinline)) double value_and_grad(const problem_t *p, const double *u, double *X, double *W,
                                                double *grad)
{
    const long N = p->n, M = p->nidx;
    const double F = p->params ? u[N] : p->F, dt = p->dt, h = 0.5 * dt, c6 = dt / 6.0, c3 = dt / 3.0;
    double *a = W, *x2 = W + N, *x3 = W + 2 * N, *x4 = W + 3 * N, *bA = W + 4 * N, *bB = W + 5 * N, *T = W + 6 * N;
    double *S = p->params ? W + 7 * N : NULL;
    memcpy(X, u, N * sizeof(double));
    for (long n = 0; n < p->nlast; n++)
        rk4(X + n * N, X + (n + 1) * N, bA, bB, T, N, F, dt);
    memset(a, 0, N * sizeof(double));
    if (S)
        memset(S, 0, N * sizeof(double));
    double Jo = 0.0;
    long k = p->nobs - 1;
    for (long n = p->nlast;; n--) {
        if (k >= 0 && p->steps[k] == n) { /* eq. (18), first term */
            const double *row = X + n * N;
            for (long j = 0; j < M; j++) {
                const double e = row[p->idx[j]] - p->obs[k * M + j];
                Jo += e * e;
                a[p->idx[j]] += p->inv_o2 * e;
            }
            k--;
        }
        if (n == 0)
            break;
        const double *x = X + (n - 1) * N;
        stage(INPUT, x, x, NULL, x2, N, F, h);
        stage(INPUT, x2, x, NULL, x3, N, F, h);
        stage(INPUT, x3, x, NULL, x4, N, F, dt);
        adj_pass(ADJ4, x4, a, c6, a, T, bB, S, N, c3, dt, c6);
        adj_pass(ADJ32, x3, bB, 1.0, a, T, bA, S, N, c3, h, c6);
        adj_pass(ADJ32, x2, bA, 1.0, a, T, bB, S, N, c6, h, c6);
        adj_pass(ADJ1, x, bB, 1.0, a, T, NULL, NULL, N, 0.0, 0.0, c6);
    }
    double J = 0.5 * p->inv_o2 * Jo;
    if (p->xb) {
        double Jb = 0.0;
        for (long j = 0; j < N; j++) {
            const double e = (X[j] - p->xb[j]) / p->sigma_b;
            Jb += e * e;
            a[j] = a[j] + e / p->sigma_b;
        }
        J = J + 0.5 * Jb;
    }
    memcpy(grad, a, N * sizeof(double));
    if (p->params) {
        double dF = 0.0;
        for (long j = 0; j < N; j++)
            dF += S[j];
        grad[N] = dF;
    }
    return J;
}

/* J alone: the forward sweep on two alternating states (nothing stored).  W: 5 n doubles. */
__attribute__((noinline)) double cost(const problem_t *p, const double *u, double *W)
{
    const long N = p->n, M = p->nidx;
    const double F = p->params ? u[N] : p->F;
    double *x = W, *xn = W + N, *acc = W + 2 * N, *ya = W + 3 * N, *yb = W + 4 * N;
    memcpy(x, u, N * sizeof(double));
    double Jo = 0.0;
    long k = 0;
    for (long n = 0;; n++) {
        if (k < p->nobs && p->steps[k] == n) {
            for (long j = 0; j < M; j++) {
                const double e = x[p->idx[j]] - p->obs[k * M + j];
                Jo += e * e;
            }
            k++;
        }
        if (n == p->nlast)
            break;
        rk4(x, xn, acc, ya, yb, N, F, p->dt);
        double *t = x;
        x = xn;
        xn = t;
    }
    double J = 0.5 * p->inv_o2 * Jo;
    if (p->xb) {
        double Jb = 0.0;
        for (long j = 0; j < N; j++) {
            const double e = (u[j] - p->xb[j]) / p->sigma_b;
            Jb += e * e;
        }
        J = J + 0.5 * Jb;
    }
    return J;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail(const char *why)
{
    fprintf(stderr, "lorenz96_adjoint: %s\n", why);
    return 2;
}

int main(void)
{
    long n, ncontrol, nobs, nidx;
    int has_bg, repeats, batch;
    double dt, F, sigma_o, sigma_b;
    if (scanf("%ld %lf %ld %lf %ld %ld %d %lf %lf %d %d", &n, &dt, &ncontrol, &F, &nobs, &nidx, &has_bg, &sigma_o,
              &sigma_b, &repeats, &batch) != 11)
        return fail("malformed header");
    if (n < 4 || (ncontrol != n && ncontrol != n + 1) || nobs < 1 || nidx < 1 || nidx > n || repeats < 1 ||
        batch < 1 || !(dt > 0) || !(sigma_o > 0) || !(sigma_b > 0))
        return fail("bad sizes in header");
    double *u = malloc(sizeof(double) * ncontrol), *grad = malloc(sizeof(double) * ncontrol);
    long *idx = malloc(sizeof(long) * nidx), *steps = malloc(sizeof(long) * nobs);
    double *obs = malloc(sizeof(double) * nobs * nidx), *xb = has_bg ? malloc(sizeof(double) * n) : NULL;
    if (!u || !grad || !idx || !steps || !obs || (has_bg && !xb))
        return fail("out of memory");
    for (long j = 0; j < ncontrol; j++)
        if (scanf("%lf", &u[j]) != 1)
            return fail("malformed control");
    for (long j = 0; j < nidx; j++) {
        if (scanf("%ld", &idx[j]) != 1)
            return fail("malformed indices");
        if (idx[j] < 0 || idx[j] >= n || (j > 0 && idx[j] <= idx[j - 1]))
            return fail("indices must be strictly increasing in 0..n-1");
    }
    for (long k = 0; k < nobs; k++) {
        if (scanf("%ld", &steps[k]) != 1)
            return fail("malformed observation step");
        if (steps[k] < 0 || (k > 0 && steps[k] <= steps[k - 1]))
            return fail("observation steps must be strictly increasing and >= 0");
        for (long j = 0; j < nidx; j++)
            if (scanf("%lf", &obs[k * nidx + j]) != 1)
                return fail("malformed observation values");
    }
    for (long j = 0; has_bg && j < n; j++)
        if (scanf("%lf", &xb[j]) != 1)
            return fail("malformed background");
    const long nlast = steps[nobs - 1];
    double *X = malloc(sizeof(double) * (size_t)n * (size_t)(nlast + 1));
    double *W = malloc(sizeof(double) * NWORK * (size_t)n);
    if (!X || !W)
        return fail("out of memory");
    problem_t p = {n, nlast, nobs, nidx, steps, idx, obs, xb, sigma_b, 1.0 / (sigma_o * sigma_o), dt, F,
                   ncontrol == n + 1};

    const double J = value_and_grad(&p, u, X, W, grad);
    const double J_cost = cost(&p, u, W);

    double call_s = INFINITY, cost_s = INFINITY;
    for (int rep = 0; rep < repeats; rep++) {
        double t0 = now();
        for (int j = 0; j < batch; j++)
            value_and_grad(&p, u, X, W, grad);
        double t = (now() - t0) / batch;
        if (t < call_s)
            call_s = t;
        t0 = now();
        for (int j = 0; j < batch; j++)
            cost(&p, u, W);
        t = (now() - t0) / batch;
        if (t < cost_s)
            cost_s = t;
    }

    printf("{\"compiler\": \"gcc %s\", \"J\": %.17g, \"J_cost\": %.17g, \"call_s\": %.9g, \"cost_s\": %.9g, \"grad\": [",
           __VERSION__, J, J_cost, call_s, cost_s);
    for (long j = 0; j < ncontrol; j++)
        printf("%s%.17g", j ? ", " : "", grad[j]);
    printf("]}\n");
    free(u);
    free(grad);
    free(idx);
    free(steps);
    free(obs);
    free(xb);
    free(X);
    free(W);
    return 0;
}
