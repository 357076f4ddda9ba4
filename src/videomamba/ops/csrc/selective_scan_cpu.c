/*
 * Selective scan (Mamba-1) forward and backward on the CPU, one (batch, channel) pair per
 * OpenMP work item. Built at first use by videomamba/ops/cpu_kernel.py and called through
 * ctypes, so the package needs no compiled wheel; without a C compiler the PyTorch paths run.
 *
 * Layouts (all contiguous):
 *   u, delta, z, out, ddelta, du, dz : (b, d, L)
 *   A : (d, n);  Bt, Ct : (b, L, n)  (B and C transposed so the state loop reads them in order)
 *   D, delta_bias : (d,)  (NULL when absent)
 *   last_state, dlast : (b, d, n) (NULL when not wanted)
 * Recurrence: h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t;  y_t = <C_t, h_t> + D u_t;  out = y silu(z).
 *
 * Speed: every transcendental (softplus, exp(dt A), the SiLU gate and their derivatives) runs in
 * a flat loop over t or over (t, k) that gcc vectorizes with glibc's vector math; the recurrence
 * loop itself only multiplies and adds. The backward recomputes each channel's states into
 * per-thread buffers of L x n, so nothing of size (b, d, L, n) is ever stored. dB and dC are sums
 * over channels: each thread accumulates its own copy ((threads, b, L, n)) and Python adds them,
 * so there are no atomics.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define DEFINE_SCAN(T, SUFFIX, EXP, LOG1P, FABS, FMAX, DECAY_EXP)                                            \
/* dts = softplus(delta + bias) (or delta + bias), as = exp(dts A); returns nothing */           \
static inline __attribute__((always_inline)) void prepare_##SUFFIX(const T *dt_c, T bias, int softplus, const T *A_c, long L, long n,  \
                             T *dts, T *as) {                                                     \
    if (softplus) {                                                                               \
        for (long t = 0; t < L; t++) {                                                            \
            T raw = dt_c[t] + bias;                                                               \
            dts[t] = FMAX(raw, (T)0) + LOG1P(EXP(-FABS(raw)));                                    \
        }                                                                                         \
    } else {                                                                                      \
        for (long t = 0; t < L; t++) dts[t] = dt_c[t] + bias;                                     \
    }                                                                                             \
    for (long t = 0; t < L; t++)                                                                  \
        for (long k = 0; k < n; k++) as[t * n + k] = DECAY_EXP(dts[t] * A_c[k]);                  \
}                                                                                                 \
                                                                                                  \
/* One reverse step over the n states; restrict lets gcc vectorize it (no aliasing). */          \
static inline __attribute__((always_inline)) void bwd_step_##SUFFIX(long n, const T *restrict Cv, const T *restrict hv,         \
        const T *restrict av, const T *restrict hp, const T *restrict Bv, const T *restrict A_c,  \
        T *restrict g, T *restrict dA, T *restrict dCv, T *restrict dBv,                          \
        T dy, T dt, T ut, T *du_out, T *ddt_out) {                                                \
    T du_acc = 0, ddt = 0, dtu = dt * ut;                                                         \
    for (long k = 0; k < n; k++) {                                                                \
        T gk = g[k] + dy * Cv[k];                                                                 \
        dCv[k] += dy * hv[k];                                                                     \
        dBv[k] += gk * dtu;                                                                       \
        du_acc += gk * Bv[k];                                                                     \
        T gah = gk * av[k] * hp[k];                                                               \
        ddt += gk * ut * Bv[k] + A_c[k] * gah;                                                    \
        dA[k] += dt * gah;                                                                        \
        g[k] = gk * av[k];                                                                        \
    }                                                                                             \
    *du_out += du_acc * dt;                                                                       \
    *ddt_out += ddt;                                                                              \
}                                                                                                 \
                                                                                                  \
/* The recurrence; writes y_t (before D and the gate) and, when hs is given, every state. */     \
static inline __attribute__((always_inline)) void recur_##SUFFIX(const T *restrict u_c, const T *restrict dts, const T *restrict as,   \
                           const T *restrict B_b, const T *restrict C_b, long L, long n,          \
                           T *restrict h, T *restrict ys, T *restrict hs) {                       \
    for (long k = 0; k < n; k++) h[k] = 0;                                                        \
    for (long t = 0; t < L; t++) {                                                                \
        T dtu = dts[t] * u_c[t], y = 0;                                                           \
        const T *Bv = B_b + t * n, *Cv = C_b + t * n, *av = as + t * n;                           \
        for (long k = 0; k < n; k++) {                                                            \
            h[k] = av[k] * h[k] + dtu * Bv[k];                                                    \
            y += h[k] * Cv[k];                                                                    \
        }                                                                                         \
        if (hs) memcpy(hs + t * n, h, sizeof(T) * (size_t)n);                                     \
        ys[t] = y;                                                                                \
    }                                                                                             \
}                                                                                                 \
                                                                                                  \
int scan_fwd_##SUFFIX(const T *u, const T *delta, const T *A, const T *Bt, const T *Ct,          \
                      const T *D, const T *z, const T *delta_bias, int softplus,                 \
                      long b, long d, long L, long n, int threads, T *out, T *last_state) {      \
    long items = b * d;                                                                           \
    int failed = 0;                                                                               \
    _Pragma("omp parallel num_threads(threads)")                                                 \
    {                                                                                             \
        T *dts = (T *)malloc(sizeof(T) * (size_t)L);                                              \
        T *as = (T *)malloc(sizeof(T) * (size_t)(L * n));                                         \
        T *h = (T *)malloc(sizeof(T) * (size_t)n);                                                \
        if (!dts || !as || !h) { _Pragma("omp atomic write") failed = 1; }                        \
        _Pragma("omp for schedule(static)")                                                      \
        for (long item = 0; item < items; item++) {                                               \
            if (failed) continue;                                                                 \
            long bi = item / d, di = item % d;                                                    \
            const T *u_c = u + item * L;                                                          \
            T Dv = D ? D[di] : (T)0, bias = delta_bias ? delta_bias[di] : (T)0;                   \
            T *y = out + item * L;                                                                \
            if (n == 16) {                                                                        \
                prepare_##SUFFIX(delta + item * L, bias, softplus, A + di * 16, L, 16, dts, as);  \
                recur_##SUFFIX(u_c, dts, as, Bt + bi * L * 16, Ct + bi * L * 16, L, 16, h, y, NULL);\
            } else {                                                                              \
                prepare_##SUFFIX(delta + item * L, bias, softplus, A + di * n, L, n, dts, as);    \
                recur_##SUFFIX(u_c, dts, as, Bt + bi * L * n, Ct + bi * L * n, L, n, h, y, NULL); \
            }                                                                                     \
            if (z) {                                                                              \
                const T *z_c = z + item * L;                                                      \
                for (long t = 0; t < L; t++)                                                      \
                    y[t] = (y[t] + Dv * u_c[t]) * z_c[t] / ((T)1 + EXP(-z_c[t]));                 \
            } else {                                                                              \
                for (long t = 0; t < L; t++) y[t] += Dv * u_c[t];                                 \
            }                                                                                     \
            if (last_state) memcpy(last_state + item * n, h, sizeof(T) * (size_t)n);              \
        }                                                                                         \
        free(dts); free(as); free(h);                                                             \
    }                                                                                             \
    return failed ? -1 : 0;                                                                       \
}                                                                                                 \
                                                                                                  \
int scan_bwd_##SUFFIX(const T *u, const T *delta, const T *A, const T *Bt, const T *Ct,          \
                      const T *D, const T *z, const T *delta_bias, int softplus,                 \
                      long b, long d, long L, long n, int threads,                               \
                      const T *dout, const T *dlast,                                              \
                      T *du, T *ddelta, T *dA_bd, T *dBt_thr, T *dCt_thr,                        \
                      T *dD_bd, T *dz, T *dbias_bd) {                                             \
    long items = b * d;                                                                           \
    int failed = 0;                                                                               \
    _Pragma("omp parallel num_threads(threads)")                                                 \
    {                                                                                             \
        int tid = omp_get_thread_num();                                                           \
        T *hs = (T *)malloc(sizeof(T) * (size_t)(L * n));                                         \
        T *as = (T *)malloc(sizeof(T) * (size_t)(L * n));                                         \
        T *dts = (T *)malloc(sizeof(T) * (size_t)L);                                              \
        T *ys = (T *)malloc(sizeof(T) * (size_t)L);                                               \
        T *dys = (T *)malloc(sizeof(T) * (size_t)L);                                              \
        T *h = (T *)malloc(sizeof(T) * (size_t)n);                                                \
        T *g = (T *)malloc(sizeof(T) * (size_t)n);                                                \
        T *dA = (T *)malloc(sizeof(T) * (size_t)n);                                               \
        T *zeros = (T *)calloc((size_t)n, sizeof(T));                                             \
        if (!hs || !as || !dts || !ys || !dys || !h || !g || !dA || !zeros) {                     \
            _Pragma("omp atomic write") failed = 1;                                               \
        }                                                                                         \
        T *dB_b0 = dBt_thr + (long)tid * b * L * n, *dC_b0 = dCt_thr + (long)tid * b * L * n;     \
        _Pragma("omp for schedule(static)")                                                      \
        for (long item = 0; item < items; item++) {                                               \
            if (failed) continue;                                                                 \
            long bi = item / d, di = item % d;                                                    \
            const T *u_c = u + item * L, *dt_c = delta + item * L, *go = dout + item * L;         \
            const T *A_c = A + di * n;                                                            \
            const T *B_b = Bt + bi * L * n, *C_b = Ct + bi * L * n;                               \
            T *dB_b = dB_b0 + bi * L * n, *dC_b = dC_b0 + bi * L * n;                             \
            T Dv = D ? D[di] : (T)0, bias = delta_bias ? delta_bias[di] : (T)0;                   \
            if (n == 16) {                                                                        \
                prepare_##SUFFIX(dt_c, bias, softplus, A_c, L, 16, dts, as);                      \
                recur_##SUFFIX(u_c, dts, as, B_b, C_b, L, 16, h, ys, hs);                         \
            } else {                                                                              \
                prepare_##SUFFIX(dt_c, bias, softplus, A_c, L, n, dts, as);                       \
                recur_##SUFFIX(u_c, dts, as, B_b, C_b, L, n, h, ys, hs);                          \
            }                                                                                     \
            T dD = 0;                                                                             \
            if (z) {                                                                              \
                const T *z_c = z + item * L;                                                      \
                T *dz_c = dz + item * L;                                                          \
                for (long t = 0; t < L; t++) {                                                    \
                    T zt = z_c[t], sg = (T)1 / ((T)1 + EXP(-zt)), yt = ys[t] + Dv * u_c[t];       \
                    dys[t] = go[t] * zt * sg;                                                     \
                    dz_c[t] = go[t] * yt * sg * ((T)1 + zt * ((T)1 - sg));                        \
                }                                                                                 \
            } else {                                                                              \
                memcpy(dys, go, sizeof(T) * (size_t)L);                                           \
            }                                                                                     \
            for (long t = 0; t < L; t++) dD += dys[t] * u_c[t];                                   \
            for (long k = 0; k < n; k++) { g[k] = dlast ? dlast[item * n + k] : (T)0; dA[k] = 0; }\
            T *ddt_c = ddelta + item * L, *du_c = du + item * L;                                  \
            for (long t = L - 1; t >= 0; t--) {                                                   \
                T dy = dys[t], ut = u_c[t], dt = dts[t];                                          \
                T du_acc = Dv * dy, ddt = 0, dtu = dt * ut;                                       \
                const T *Bv = B_b + t * n, *Cv = C_b + t * n;                                     \
                T *dBv = dB_b + t * n, *dCv = dC_b + t * n;                                       \
                const T *hv = hs + t * n, *av = as + t * n;                                       \
                const T *hp = t > 0 ? hs + (t - 1) * n : zeros;  /* branch-free inner loop */    \
                if (n == 16)                                                                      \
                    bwd_step_##SUFFIX(16, Cv, hv, av, hp, Bv, A_c, g, dA, dCv, dBv, dy, dt, ut, &du_acc, &ddt); \
                else                                                                              \
                    bwd_step_##SUFFIX(n, Cv, hv, av, hp, Bv, A_c, g, dA, dCv, dBv, dy, dt, ut, &du_acc, &ddt); \
                ddt_c[t] = ddt;                                                                   \
                du_c[t] = du_acc;                                                                 \
            }                                                                                     \
            T dbias = 0;                                                                          \
            if (softplus)                                                                         \
                for (long t = 0; t < L; t++) ddt_c[t] *= (T)1 / ((T)1 + EXP(-(dt_c[t] + bias)));  \
            for (long t = 0; t < L; t++) dbias += ddt_c[t];                                       \
            memcpy(dA_bd + item * n, dA, sizeof(T) * (size_t)n);                                  \
            dD_bd[item] = dD;                                                                     \
            dbias_bd[item] = dbias;                                                               \
        }                                                                                         \
        free(hs); free(as); free(dts); free(ys); free(dys); free(h); free(g); free(dA); free(zeros);\
    }                                                                                             \
    return failed ? -1 : 0;                                                                       \
}

DEFINE_SCAN(float, f32, expf, log1pf, fabsf, fmaxf, expf)
DEFINE_SCAN(double, f64, exp, log1p, fabs, fmax, exp)
