// ADOL-C front doors for adjointbench (backends `adolc` and `adolc-retape`).
//
// The two forward models and their costs are written once, as templates on the scalar type
// T of the state and P of the model parameters (double or adouble): T = P = double is the
// plain forward model (`adolc-retape`'s forward-only J), T = adouble records the operations on
// an ADOL-C tape (trace_on .. trace_off), which ADOL-C then replays: zos_forward (keep = 1:
// the values the reverse sweep needs go to the Taylor stack) and fos_reverse (the adjoint,
// one reverse sweep over the recorded operations).  Parameters that are not controls stay
// passive (P = double), so their products are recorded as constant-times-variable ops.
//
// Everything is exposed through a plain C ABI (extern "C"), called from the Cython wrapper
// kernels/adolc/_adolc.pyx, which holds the one lock around every call (ADOL-C keeps its tapes
// and its current tape in process-wide state: it is not thread-safe) and checks every size
// before it calls here: these functions trust their pointers and lengths.  ADOL-C reports
// failures by throwing FatalError (or std::bad_alloc from its buffers): every front door
// catches everything and returns AB_ERR with the message, never letting an exception unwind
// into Python (which would abort the interpreter).
#include <adolc/adolc.h>
#include <adolc/adolc_fatalerror.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

extern "C" {
// ADOL-C's base names of the tape files (taping.c; 0 locations, 1 values, 2 operations,
// 3 Taylors), "./ADOLC-..." by default: a buffer that fills is written there, in the cwd.
extern char *tapeBaseNames[4];
}

namespace {

enum { AB_OK = 0, AB_ERR = -100 };

struct L63 {
    double dt, sigma, r, beta;
    int32_t nlast, nobs, n_control;
    const int32_t *steps;  // nobs strictly increasing steps in 0..nlast, steps[nobs-1] == nlast
    const double *obs;     // (nobs, 3)
};

struct L96 {
    int32_t n, nlast, nobs, m, n_control, has_background;
    double dt, F, sigma_o, sigma_b;
    const int32_t *steps;  // nobs steps, as for L63
    const int32_t *idx;    // m observed indices in 0..n-1
    const double *obs;     // (nobs, m)
    const double *xb;      // (n,) when has_background
};

void set_error(char *err, size_t len, const char *what) {
    if (err != nullptr && len > 0) {
        std::snprintf(err, len, "%s", what);
    }
}

// ---- Lorenz-63: forward Euler of eq. (20) (List 1), J = 1/2 sum_k |w_{s_k} - wo_k|^2 ----------

template <class T, class P>
T l63_run(const L63 &p, const T &x0, const T &y0, const T &z0, const P &sigma, const P &r, const P &beta) {
    T x = x0, y = y0, z = z0;
    T sum = 0.0;
    int k = 0;
    for (int32_t n = 0;; ++n) {
        if (k < p.nobs && p.steps[k] == n) {  // observation of w_n: integer control flow only
            const double *o = p.obs + 3 * k;
            T dx = x - o[0], dy = y - o[1], dz = z - o[2];
            sum += dx * dx + dy * dy + dz * dz;
            ++k;
        }
        if (n == p.nlast) break;
        // w_{n+1} = w_n + dt f(w_n), in the order of List 1 (model.forward)
        T x1 = x + p.dt * sigma * (-x + y);
        T y1 = y + p.dt * (-x * z + r * x - y);
        T z1 = z + p.dt * (x * y - beta * z);
        x = x1;
        y = y1;
        z = z1;
    }
    return 0.5 * sum;
}

template <class T>
T l63_cost(const L63 &p, const T *u) {
    if (p.n_control == 6) return l63_run<T, T>(p, u[0], u[1], u[2], u[3], u[4], u[5]);
    return l63_run<T, double>(p, u[0], u[1], u[2], p.sigma, p.r, p.beta);
}

// ---- Lorenz-96: classical RK4 of f_i = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F ---------------------

template <class T, class P>
void l96_rhs(const std::vector<T> &x, const P &F, std::vector<T> &f) {
    const int n = static_cast<int>(x.size());
    for (int i = 0; i < n; ++i) {  // ring indices by integer arithmetic: no value-dependent branch
        const int ip1 = i + 1 == n ? 0 : i + 1;
        const int im1 = i == 0 ? n - 1 : i - 1;
        const int im2 = i < 2 ? i + n - 2 : i - 2;
        f[i] = (x[ip1] - x[im2]) * x[im1] - x[i] + F;
    }
}

template <class T, class P>
T l96_run(const L96 &p, const T *x0, const P &F) {
    const int n = p.n;
    const double h = 0.5 * p.dt, dt6 = p.dt / 6.0;
    std::vector<T> x(x0, x0 + n), xs(n), k1(n), k2(n), k3(n), k4(n);
    T sum = 0.0;
    int k = 0;
    for (int32_t s = 0;; ++s) {
        if (k < p.nobs && p.steps[k] == s) {  // (x_{s_k, idx_j} - y_kj) / sigma_o
            const double *o = p.obs + static_cast<size_t>(k) * p.m;
            for (int j = 0; j < p.m; ++j) {
                T d = (x[p.idx[j]] - o[j]) / p.sigma_o;
                sum += d * d;
            }
            ++k;
        }
        if (s == p.nlast) break;
        // k1 = f(x), k2 = f(x + dt/2 k1), k3 = f(x + dt/2 k2), k4 = f(x + dt k3)
        l96_rhs<T, P>(x, F, k1);
        for (int i = 0; i < n; ++i) xs[i] = x[i] + h * k1[i];
        l96_rhs<T, P>(xs, F, k2);
        for (int i = 0; i < n; ++i) xs[i] = x[i] + h * k2[i];
        l96_rhs<T, P>(xs, F, k3);
        for (int i = 0; i < n; ++i) xs[i] = x[i] + p.dt * k3[i];
        l96_rhs<T, P>(xs, F, k4);
        // x+ = x + dt/6 (k1 + 2 k2 + 2 k3 + k4), summed left to right as lorenz96_equations.step
        for (int i = 0; i < n; ++i) x[i] = x[i] + dt6 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
    }
    T J = 0.5 * sum;
    if (p.has_background) {  // 1/2 sum_i (x0_i - xb_i)^2 / sigma_b^2
        T bsum = 0.0;
        for (int i = 0; i < n; ++i) {
            T e = (x0[i] - p.xb[i]) / p.sigma_b;
            bsum += e * e;
        }
        J += 0.5 * bsum;
    }
    return J;
}

template <class T>
T l96_cost(const L96 &p, const T *u) {
    if (p.n_control == p.n + 1) return l96_run<T, T>(p, u, u[p.n]);
    return l96_run<T, double>(p, u, p.F);
}

// ---- taping -----------------------------------------------------------------------------------

// Records cost(u) on tape `tag` with the given buffer sizes (operations, locations, values,
// Taylor entries); J(u) from the taping run, the tape's statistics (tapestats) after it.
template <class Problem, class Cost>
int record(short tag, const Problem &p, int n_control, const double *u, const unsigned *sizes, double *J,
           size_t *stats, char *err, size_t errlen, Cost cost) {
    bool taping = false;
    try {
        trace_on(tag, 0, sizes[0], sizes[1], sizes[2], sizes[3]);
        taping = true;
        {
            std::vector<adouble> ua(n_control);
            for (int i = 0; i < n_control; ++i) ua[i] <<= u[i];
            adouble Ja = cost(p, ua.data());
            Ja >>= *J;
        }  // every adouble dies before trace_off
        taping = false;
        trace_off();
        tapestats(tag, stats);
        return AB_OK;
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception while taping");
    }
    // leave ADOL-C in a usable state: no half-recorded tape, nothing of this tag kept
    try {
        if (taping || isTaping()) trace_off();
    } catch (...) {
    }
    try {
        removeTape(tag, ADOLC_REMOVE_COMPLETELY);
    } catch (...) {
    }
    return AB_ERR;
}

}  // namespace

extern "C" {

int ab_adolc_status_size(void) { return STAT_SIZE; }

// Points ADOL-C's tape files at `dir` (a private directory): should a buffer ever fill in
// spite of the sizing, the spill lands there and is deleted with the tape, not in the cwd.
int ab_adolc_set_tape_dir(const char *dir, char *err, size_t errlen) {
    static const char *names[4] = {"ADOLC-Locations_", "ADOLC-Values_", "ADOLC-Operations_", "ADOLC-Taylors_"};
    try {
        for (int i = 0; i < 4; ++i) {
            size_t len = std::strlen(dir) + std::strlen(names[i]) + 2;
            char *s = static_cast<char *>(std::malloc(len));  // ADOL-C frees these with free()
            if (s == nullptr) throw std::bad_alloc();
            std::snprintf(s, len, "%s/%s", dir, names[i]);
            std::free(tapeBaseNames[i]);
            tapeBaseNames[i] = s;
        }
        return AB_OK;
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception");
    }
    return AB_ERR;
}

int ab_adolc_tape_l63(short tag, double dt, double sigma, double r, double beta, int32_t nlast, int32_t nobs,
                      const int32_t *steps, const double *obs, int32_t n_control, const double *u,
                      const unsigned *sizes, double *J, size_t *stats, char *err, size_t errlen) {
    L63 p{dt, sigma, r, beta, nlast, nobs, n_control, steps, obs};
    return record(tag, p, n_control, u, sizes, J, stats, err, errlen,
                  [](const L63 &q, const adouble *v) { return l63_cost<adouble>(q, v); });
}

int ab_adolc_tape_l96(short tag, int32_t n, double dt, double F, int32_t nlast, int32_t nobs, const int32_t *steps,
                      int32_t m, const int32_t *idx, const double *obs, double sigma_o, const double *xb,
                      double sigma_b, int32_t n_control, const double *u, const unsigned *sizes, double *J,
                      size_t *stats, char *err, size_t errlen) {
    L96 p{n, nlast, nobs, m, n_control, xb != nullptr, dt, F, sigma_o, sigma_b, steps, idx, obs, xb};
    return record(tag, p, n_control, u, sizes, J, stats, err, errlen,
                  [](const L96 &q, const adouble *v) { return l96_cost<adouble>(q, v); });
}

// The plain double forward models (the same templates, T = P = double).
int ab_cost_l63(double dt, double sigma, double r, double beta, int32_t nlast, int32_t nobs, const int32_t *steps,
                const double *obs, int32_t n_control, const double *u, double *J, char *err, size_t errlen) {
    try {
        L63 p{dt, sigma, r, beta, nlast, nobs, n_control, steps, obs};
        *J = l63_cost<double>(p, u);
        return AB_OK;
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception");
    }
    return AB_ERR;
}

int ab_cost_l96(int32_t n, double dt, double F, int32_t nlast, int32_t nobs, const int32_t *steps, int32_t m,
                const int32_t *idx, const double *obs, double sigma_o, const double *xb, double sigma_b,
                int32_t n_control, const double *u, double *J, char *err, size_t errlen) {
    try {
        L96 p{n, nlast, nobs, m, n_control, xb != nullptr, dt, F, sigma_o, sigma_b, steps, idx, obs, xb};
        *J = l96_cost<double>(p, u);
        return AB_OK;
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception");
    }
    return AB_ERR;
}

// J and dJ/du for each of the B rows of U (B x n) by replaying tape `tag`: zos_forward with
// keep = 1, then fos_reverse with weight 1 on the one dependent (what ADOL-C's gradient()
// driver does, which however does not return J).  Returns the smallest ADOL-C return code
// (3 for these models: no comparison is recorded), AB_ERR on an exception; on a negative code
// (-1: the point lies on another branch than the taping point: re-tape) *row is the row that
// gave it and the rows before it are done.
int ab_adolc_replay(short tag, int32_t n, int32_t B, const double *U, double *J, double *G, int32_t *row, char *err,
                    size_t errlen) {
    int rc_min = 3;
    *row = 0;
    try {
        double one = 1.0;
        for (int32_t b = 0; b < B; ++b) {
            *row = b;
            const size_t off = static_cast<size_t>(b) * n;
            int rc = zos_forward(tag, 1, n, 1, U + off, J + b);
            if (rc < 0) return rc;
            int rc2 = fos_reverse(tag, 1, n, &one, G + off);
            if (rc2 < rc) rc = rc2;
            if (rc < 0) return rc;
            if (rc < rc_min) rc_min = rc;
        }
        *row = B;
        return rc_min;
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception during replay");
    }
    return AB_ERR;
}

// J alone by replaying the tape: zos_forward with keep = 0 (no Taylor stack, no reverse).
int ab_adolc_forward(short tag, int32_t n, const double *u, double *J, char *err, size_t errlen) {
    try {
        return zos_forward(tag, 1, n, 0, u, J);
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception during forward");
    }
    return AB_ERR;
}

// ADOL-C's gradient() driver on tape `tag` (for the re-taping backend, right after taping at u).
int ab_adolc_gradient(short tag, int32_t n, const double *u, double *g, char *err, size_t errlen) {
    try {
        return gradient(tag, n, u, g);
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception in gradient");
    }
    return AB_ERR;
}

int ab_adolc_tapestats(short tag, size_t *stats, char *err, size_t errlen) {
    try {
        tapestats(tag, stats);
        return AB_OK;
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception in tapestats");
    }
    return AB_ERR;
}

// Frees tape `tag` (operations, locations, values and its Taylor stack) from memory.
int ab_adolc_remove(short tag, char *err, size_t errlen) {
    try {
        return removeTape(tag, ADOLC_REMOVE_COMPLETELY);
    } catch (const std::exception &e) {
        set_error(err, errlen, e.what());
    } catch (...) {
        set_error(err, errlen, "unknown C++ exception in removeTape");
    }
    return AB_ERR;
}

}  // extern "C"
