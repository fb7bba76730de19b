/* The yardstick of the compiled backends: a plain C hand adjoint of the Euler Lorenz (1963) model,
 * compiled with gcc -O3 by adjointbench.c_reference and timed in C (no Python in the loop).
 *
 * Same conventions and the same arithmetic as adjointbench.hand_adjoint, so that a ratio to
 * this program measures the tool, not the algebra: the model (paper List 1) is integrated only
 * to the last observation step; the backward sweep is List 2 in its order, adding the
 * innovation dJ/dw at each observed step (eq. 18, first term) and accumulating the parameter
 * adjoints (eq. 19).  List 3, the same sweep with each step's updates collected, gives the
 * same numbers to rounding.  dt, the observation steps and values are read
 * at run time so that the compiler cannot specialise on them.
 *
 * stdin (whitespace separated):
 *   dt ncontrol nobs repeats batch iterations step
 *   x0 y0 z0 sigma r beta            (the control, padded with the fixed parameters)
 *   s_k ox_k oy_k oz_k               (nobs lines, s_k strictly increasing, s_0 >= 0)
 * stdout: one JSON object with J, grad, the per-gradient time (min over `repeats` batches of
 * `batch` calls), the fused steepest-descent time (min over `repeats`) and its result.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    double dt;
    int nobs;
    const long *steps;
    const double *obs; /* nobs x 3 */
    double *w;         /* (steps[nobs-1] + 1) x 3: the trajectory */
    double *d;         /* nobs x 3: dJ/dw at the observed steps */
} problem_t;

/* J and dJ/d(x0, y0, z0, sigma, r, beta); noinline so that it is timed as a library call. */
__attribute__((noinline)) double value_and_grad(const problem_t *p, const double u[6], double grad[6])
{
    const double dt = p->dt, s = u[3], r = u[4], b = u[5];
    const int nobs = p->nobs;
    const long *steps = p->steps;
    const long nlast = steps[nobs - 1];
    double *w = p->w, *d = p->d;
    w[0] = u[0];
    w[1] = u[1];
    w[2] = u[2];
    for (long n = 0; n < nlast; n++) { /* List 1 */
        const double x = w[3 * n], y = w[3 * n + 1], z = w[3 * n + 2];
        w[3 * n + 3] = x + dt * s * (-x + y);
        w[3 * n + 4] = y + dt * (-x * z + r * x - y);
        w[3 * n + 5] = z + dt * (x * y - b * z);
    }
    double J = 0.0;
    for (int k = 0; k < nobs; k++)
        for (int i = 0; i < 3; i++) {
            const double e = w[3 * steps[k] + i] - p->obs[3 * k + i];
            d[3 * k + i] = e;
            J += 0.5 * e * e;
        }
    double ax = 0.0, ay = 0.0, az = 0.0, as = 0.0, ar = 0.0, ab = 0.0;
    int k = nobs - 1;
    for (long n = nlast;; n--) {
        if (k >= 0 && steps[k] == n) { /* eq. (18), first term */
            ax += d[3 * k];
            ay += d[3 * k + 1];
            az += d[3 * k + 2];
            k--;
        }
        if (n == 0)
            break;
        const double x = w[3 * n - 3], y = w[3 * n - 2], z = w[3 * n - 1];
        /* List 2, in its order (as hand_adjoint.py): the same arithmetic as the backends */
        ab = ab - dt * z * az;
        double bz = (1.0 - dt * b) * az;
        double by = dt * x * az;
        double bx = dt * y * az;
        ar = ar + dt * x * ay;
        bz = bz - dt * x * ay;
        by = by + (1.0 - dt) * ay;
        bx = bx + dt * (-z + r) * ay;
        as = as + dt * (-x + y) * ax;
        by = by + s * dt * ax;
        bx = bx + (1.0 - s * dt) * ax;
        ax = bx;
        ay = by;
        az = bz;
    }
    grad[0] = ax;
    grad[1] = ay;
    grad[2] = az;
    grad[3] = as;
    grad[4] = ar;
    grad[5] = ab;
    return J;
}

/* The Tbl. 3 workload: u <- u - step * grad on the first ncontrol entries, `iterations` times. */
__attribute__((noinline)) void descent(const problem_t *p, double u[6], int ncontrol, int iterations,
                                       double step, double *costs)
{
    double g[6];
    for (int i = 0; i < iterations; i++) {
        costs[i] = value_and_grad(p, u, g);
        for (int j = 0; j < ncontrol; j++)
            u[j] = u[j] - step * g[j];
    }
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail(const char *why)
{
    fprintf(stderr, "lorenz63_adjoint: %s\n", why);
    return 2;
}

int main(void)
{
    double dt, step;
    int ncontrol, nobs, repeats, batch, iterations;
    if (scanf("%lf %d %d %d %d %d %lf", &dt, &ncontrol, &nobs, &repeats, &batch, &iterations, &step) != 7)
        return fail("malformed header");
    if (nobs < 1 || (ncontrol != 3 && ncontrol != 6) || repeats < 1 || batch < 1 || iterations < 1)
        return fail("bad sizes in header");
    double u0[6];
    for (int j = 0; j < 6; j++)
        if (scanf("%lf", &u0[j]) != 1)
            return fail("malformed control");
    long *steps = malloc(sizeof(long) * nobs);
    double *obs = malloc(sizeof(double) * 3 * nobs);
    double *costs = malloc(sizeof(double) * iterations);
    if (!steps || !obs || !costs)
        return fail("out of memory");
    for (int k = 0; k < nobs; k++) {
        if (scanf("%ld %lf %lf %lf", &steps[k], &obs[3 * k], &obs[3 * k + 1], &obs[3 * k + 2]) != 4)
            return fail("malformed observation");
        if (steps[k] < 0 || (k > 0 && steps[k] <= steps[k - 1]))
            return fail("observation steps must be strictly increasing and >= 0");
    }
    double *w = malloc(sizeof(double) * 3 * (size_t)(steps[nobs - 1] + 1));
    double *d = malloc(sizeof(double) * 3 * nobs);
    if (!w || !d)
        return fail("out of memory");
    problem_t p = {dt, nobs, steps, obs, w, d};

    double grad[6];
    const double J = value_and_grad(&p, u0, grad);

    double call_s = INFINITY;
    for (int rep = 0; rep < repeats; rep++) {
        const double t0 = now();
        for (int j = 0; j < batch; j++)
            value_and_grad(&p, u0, grad);
        const double t = (now() - t0) / batch;
        if (t < call_s)
            call_s = t;
    }

    double workload_s = INFINITY, u[6];
    for (int rep = 0; rep < repeats; rep++) {
        for (int j = 0; j < 6; j++)
            u[j] = u0[j];
        const double t0 = now();
        descent(&p, u, ncontrol, iterations, step, costs);
        const double t = now() - t0;
        if (t < workload_s)
            workload_s = t;
    }

    printf("{\"compiler\": \"gcc %s\", \"J\": %.17g, \"grad\": [", __VERSION__, J);
    for (int j = 0; j < ncontrol; j++)
        printf("%s%.17g", j ? ", " : "", grad[j]);
    printf("], \"call_s\": %.9g, \"workload_s\": %.9g, \"descent_u\": [", call_s, workload_s);
    for (int j = 0; j < ncontrol; j++)
        printf("%s%.17g", j ? ", " : "", u[j]);
    printf("], \"descent_costs\": [");
    for (int i = 0; i < iterations; i++)
        printf("%s%.17g", i ? ", " : "", costs[i]);
    printf("]}\n");
    free(steps);
    free(obs);
    free(costs);
    free(w);
    free(d);
    return 0;
}
