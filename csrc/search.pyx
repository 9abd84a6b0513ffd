# cython: language_level=3
"""Compiled search core (ltg_engine._search): greedy/sampling and beam loops.

The pure-Python spec is ltg_engine/search_ref.py; this module gives identical
tokens and scores (same float64 operation order, sequential sums, same tie
breaks). Python validates options and logits; every per-token loop below runs
with the GIL released over raw pointers into buffers allocated once in __init__.
Arrays exposed as attributes (tokens, parents, active_rows, kept, emitted) are
views of buffers reused across steps: copy them to keep them.
"""
import numpy as np

from libc.math cimport INFINITY, exp, log, pow
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy

from ltg_engine.search_ref import (SearchParams, all_masked_error, bad_logits_error,
                                   check_logits, resolve_params)

from search cimport Candidate, LogSoftmax, Processors, Sampler, Scratch, Sizes
from rng cimport rng_init, rng_uniform

cdef double NEG_INF = -INFINITY
cdef enum:
    STOP_HEURISTIC = 0            # early_stopping=False: best live beam scored at its current length
    STOP_AT_K = 1                 # early_stopping=True: num_beams finished hypotheses
    STOP_EXACT = 2                # early_stopping="never": no live beam can still win
cdef Py_ssize_t SORT_ABOVE_K = 64   # top_k larger than this: qsort instead of insertion


# ---------------------------------------------------------------- per-hypothesis math
cdef Py_ssize_t first_bad_logit(const float* x, Py_ssize_t n) noexcept nogil:
    """Index of the first NaN or +inf, or -1. The flag loop has no early exit so it vectorizes."""
    cdef Py_ssize_t t
    cdef bint bad = False
    for t in range(n):
        bad = bad | (not (x[t] < INFINITY))
    if not bad:
        return -1
    for t in range(n):
        if not (x[t] < INFINITY):
            return t
    return -1


cdef void apply_processors(double* x, const int64_t* hist, Py_ssize_t length,
                           const Processors* p, uint8_t* mark) noexcept nogil:
    """Repetition penalty (once per distinct token), then -inf for every banned token."""
    cdef Py_ssize_t j, i, t, n
    cdef double v
    if p.repetition_penalty != 1.0:
        for j in range(length):
            t = hist[j]
            if not mark[t]:
                mark[t] = 1
                v = x[t]
                x[t] = v / p.repetition_penalty if v > 0 else v * p.repetition_penalty
        for j in range(length):
            mark[hist[j]] = 0
    for j in range(p.n_banned):
        x[p.banned_ids[j]] = NEG_INF
    if length < p.min_new_tokens:
        for j in range(p.n_eos):
            x[p.eos_ids[j]] = NEG_INF
    n = p.no_repeat_ngram
    if n > 0 and length + 1 >= n:
        for i in range(length - n + 1):
            for j in range(n - 1):
                if hist[i + j] != hist[length - n + 1 + j]:
                    break
            else:
                x[hist[i + n - 1]] = NEG_INF


cdef int log_softmax_stats(const double* x, Py_ssize_t n, LogSoftmax* out) noexcept nogil:
    """Max, first argmax and log(sum exp(x - max)) summed in id order; -1 when all are -inf."""
    cdef Py_ssize_t t, arg = 0
    cdef double m = x[0], s = 0.0
    for t in range(1, n):
        if x[t] > m:
            m = x[t]
            arg = t
    if m == NEG_INF:
        return -1
    for t in range(n):
        if x[t] != NEG_INF:
            s += exp(x[t] - m)
    out.max = m
    out.lse = log(s)
    out.argmax = arg
    return 0


cdef inline Py_ssize_t insert_candidate(Candidate* top, Py_ssize_t count, Py_ssize_t cap,
                                        double score, int64_t index) noexcept nogil:
    """Insert into `top` (score desc; equal scores keep arrival order); returns the new count."""
    cdef Py_ssize_t at
    if count == cap:
        if not score > top[cap - 1].score:
            return count
        count -= 1
    at = count
    while at > 0 and top[at - 1].score < score:
        top[at] = top[at - 1]
        at -= 1
    top[at].score = score
    top[at].index = index
    return count + 1


cdef int compare_candidates(const void* a, const void* b) noexcept nogil:
    cdef const Candidate* ca = <const Candidate*>a
    cdef const Candidate* cb = <const Candidate*>b
    if ca.score != cb.score:
        return -1 if ca.score > cb.score else 1
    return -1 if ca.index < cb.index else (1 if ca.index > cb.index else 0)


cdef int64_t sample_token(const double* x, Py_ssize_t vocab, const Sampler* s,
                          Scratch* scratch, uint64_t* state) noexcept nogil:
    """Temperature, top-k, top-p, one draw (see search_ref.sample_token)."""
    cdef Candidate* cands = scratch.cands
    cdef double* w = scratch.weights
    cdef Py_ssize_t t, j, count = 0, n, cap = vocab
    cdef double y, top, total = 0.0, cum = 0.0, target
    if 0 < s.top_k <= SORT_ABOVE_K:
        cap = s.top_k
        for t in range(vocab):
            y = x[t] / s.temperature
            if y != NEG_INF:
                count = insert_candidate(cands, count, cap, y, t)
    else:
        for t in range(vocab):
            y = x[t] / s.temperature
            if y != NEG_INF:
                cands[count].score = y
                cands[count].index = t
                count += 1
        qsort(cands, count, sizeof(Candidate), compare_candidates)
        if 0 < s.top_k < count:
            count = s.top_k
    top = cands[0].score
    for j in range(count):
        w[j] = exp(cands[j].score - top)
    n = count
    if s.top_p < 1.0:
        for j in range(count):
            total += w[j]
        for j in range(count):
            cum += w[j] / total
            if cum >= s.top_p:
                n = j + 1
                break
    total = 0.0
    for j in range(n):
        total += w[j]
    target = rng_uniform(state) * total
    cum = 0.0
    for j in range(n):
        cum += w[j]
        if target < cum:
            return cands[j].index
    return cands[n - 1].index


# ---------------------------------------------------------------- shared state
cdef class _SearchBase:
    cdef readonly object params
    cdef readonly object tokens, parents, active_rows, kept
    cdef readonly Py_ssize_t step
    cdef readonly bint done, compacted
    cdef Sizes sizes
    cdef Processors procs
    cdef Sampler sampler
    cdef Scratch scratch
    cdef Py_ssize_t n_active, width
    cdef object _buffers                     # keeps every array behind a pointer alive
    cdef int64_t* active_buf
    cdef int64_t* kept_buf
    cdef int64_t* tokens_buf
    cdef int64_t* parents_buf
    cdef object _active_arr, _kept_arr, _tokens_arr, _parents_arr

    def __init__(self, params, Py_ssize_t width):
        cdef object opts = params.options
        self.params = params
        self._buffers = []
        self.sizes.batch = params.batch_size
        self.sizes.beams = width
        self.sizes.vocab = params.vocab_size
        self.sizes.max_new = opts.max_new_tokens
        self.width = width
        self.n_active = params.batch_size
        banned = self._int64(params.banned_ids or [0])
        eos = self._int64(params.eos_ids)
        is_eos = np.zeros(params.vocab_size, dtype=np.uint8)
        is_eos[params.eos_ids] = 1
        self.procs.repetition_penalty = opts.repetition_penalty
        self.procs.no_repeat_ngram = opts.no_repeat_ngram_size
        self.procs.min_new_tokens = opts.min_new_tokens
        self.procs.banned_ids = <const int64_t*>self._ptr(banned)
        self.procs.n_banned = len(params.banned_ids)
        self.procs.eos_ids = <const int64_t*>self._ptr(eos)
        self.procs.n_eos = len(params.eos_ids)
        self.procs.is_eos = <const uint8_t*>self._ptr(self._keep(is_eos))
        self.sampler.enabled = opts.do_sample
        self.sampler.temperature = opts.temperature
        self.sampler.top_k = opts.top_k
        self.sampler.top_p = opts.top_p
        v = params.vocab_size
        self.scratch.work = <double*>self._ptr(self._keep(np.zeros(v, np.float64)))
        self.scratch.mark = <uint8_t*>self._ptr(self._keep(np.zeros(v, np.uint8)))
        self.scratch.cands = <Candidate*>self._ptr(self._keep(np.zeros(v * 16, np.uint8)))
        self.scratch.weights = <double*>self._ptr(self._keep(np.zeros(v, np.float64)))
        b = params.batch_size
        self._active_arr = self._int64(np.arange(b))
        self._kept_arr = self._int64(np.arange(b))
        self._tokens_arr = self._int64(np.full(b * width, params.bos_id))
        self._parents_arr = self._int64(np.zeros(b * width))
        self.active_buf = <int64_t*>self._ptr(self._active_arr)
        self.kept_buf = <int64_t*>self._ptr(self._kept_arr)
        self.tokens_buf = <int64_t*>self._ptr(self._tokens_arr)
        self.parents_buf = <int64_t*>self._ptr(self._parents_arr)
        self.step = 0
        self.done = False
        self.compacted = False
        self._publish(1)

    cdef object _keep(self, arr):
        self._buffers.append(arr)
        return arr

    cdef object _int64(self, values):
        return self._keep(np.ascontiguousarray(values, dtype=np.int64))

    cdef void* _ptr(self, arr) except NULL:
        cdef uint8_t[::1] raw = arr.reshape(-1).view(np.uint8)
        return <void*>&raw[0]

    cdef _publish(self, Py_ssize_t k):
        n = self.n_active
        self.active_rows = self._active_arr[:n]
        self.kept = self._kept_arr[:n]
        self.tokens = self._tokens_arr[:n * k].reshape(n, k)
        self.parents = self._parents_arr[:n * k].reshape(n, k)

    cdef _check(self, logits):
        """Python-side validation; then a nogil scan for NaN/+inf in the whole array."""
        if self.done:
            raise ValueError("advance() called after the search is done")
        check_logits(logits, self.n_active, self.tokens.shape[1], self.sizes.vocab)
        cdef const float[:, :, ::1] view = logits
        cdef Py_ssize_t i, k, t = -1, n_hyps = view.shape[0] * view.shape[1]
        cdef const float* base = &view[0, 0, 0] if n_hyps > 0 else NULL
        with nogil:
            for i in range(n_hyps):
                t = first_bad_logit(base + i * self.sizes.vocab, self.sizes.vocab)
                if t >= 0:
                    break
        if t >= 0:
            k = i % view.shape[1]
            i = i // view.shape[1]
            raise bad_logits_error(self.step, i, int(self.active_buf[i]), k, t)
        return view

    cdef void _finish_step(self, Py_ssize_t n_survivors) noexcept:
        self.compacted = n_survivors < self.n_active
        self.n_active = n_survivors
        self.step += 1
        self.done = n_survivors == 0
        self._publish(self.width)



# ---------------------------------------------------------------- greedy / sampling loop
cdef class GreedySearch(_SearchBase):
    """num_beams == 1: argmax, or a sample when do_sample. K is always 1.

    emitted[row]: the token appended to each original row at the last advance,
    -1 when the row had already finished or produced EOS (for streaming).
    results(): per row [(token_ids, sum of log-probs incl. EOS when produced)].
    """
    cdef readonly object emitted
    cdef object _history, _lengths, _scores, _rng
    cdef int64_t* hist            # [batch, max_new]
    cdef int64_t* lengths         # [batch]
    cdef double* scores           # [batch]
    cdef uint64_t* rng            # [batch] one stream per original row
    cdef int64_t* emitted_buf     # [batch]
    cdef int64_t* pick_token      # [batch] per active position, this step
    cdef double* pick_logp
    cdef uint64_t* pick_rng

    def __init__(self, params):
        super().__init__(params, 1)
        b, m = params.batch_size, params.options.max_new_tokens
        self._history = self._int64(np.zeros((b, m)))
        self._lengths = self._int64(np.zeros(b))
        self._scores = self._keep(np.zeros(b, np.float64))
        self._rng = self._keep(np.array([rng_init(params.seed, r) for r in range(b)], np.uint64))
        self.emitted = self._int64(np.full(b, -1))
        self.hist = <int64_t*>self._ptr(self._history)
        self.lengths = <int64_t*>self._ptr(self._lengths)
        self.scores = <double*>self._ptr(self._scores)
        self.rng = <uint64_t*>self._ptr(self._rng)
        self.emitted_buf = <int64_t*>self._ptr(self.emitted)
        self.pick_token = <int64_t*>self._ptr(self._int64(np.zeros(b)))
        self.pick_logp = <double*>self._ptr(self._keep(np.zeros(b, np.float64)))
        self.pick_rng = <uint64_t*>self._ptr(self._keep(np.zeros(b, np.uint64)))

    def advance(self, logits):
        """Consume logits float32 [n_active, 1, V] for the tokens last fed; pick, then compact."""
        cdef const float[:, :, ::1] view = self._check(logits)
        cdef Py_ssize_t masked, survivors = 0
        with nogil:
            masked = self._choose(&view[0, 0, 0])
            if masked < 0:
                survivors = self._commit()
        if masked >= 0:
            raise all_masked_error(self.step, int(self.active_buf[masked]), 0)
        self._finish_step(survivors)

    cdef Py_ssize_t _choose(self, const float* logits) noexcept nogil:
        """Phase 1, no state change: a token per active row. Returns a fully masked row or -1."""
        cdef Py_ssize_t i, t, r, v = self.sizes.vocab
        cdef double* x = self.scratch.work
        cdef LogSoftmax st
        cdef uint64_t state
        cdef int64_t token
        for i in range(self.n_active):
            r = self.active_buf[i]
            for t in range(v):
                x[t] = logits[i * v + t]
            apply_processors(x, self.hist + r * self.sizes.max_new, self.step,
                             &self.procs, self.scratch.mark)
            if log_softmax_stats(x, v, &st) < 0:
                return i
            state = self.rng[r]
            if self.sampler.enabled:
                token = sample_token(x, v, &self.sampler, &self.scratch, &state)
            else:
                token = st.argmax
            self.pick_token[i] = token
            self.pick_logp[i] = (x[token] - st.max) - st.lse
            self.pick_rng[i] = state
        return -1

    cdef Py_ssize_t _commit(self) noexcept nogil:
        """Phase 2: append the picks, retire finished rows, compact the active set in place."""
        cdef Py_ssize_t i, r, n = 0
        cdef int64_t token
        for r in range(self.sizes.batch):
            self.emitted_buf[r] = -1
        for i in range(self.n_active):
            r = self.active_buf[i]
            token = self.pick_token[i]
            self.scores[r] += self.pick_logp[i]
            self.rng[r] = self.pick_rng[i]
            if self.procs.is_eos[token]:
                continue
            self.hist[r * self.sizes.max_new + self.step] = token
            self.lengths[r] = self.step + 1
            self.emitted_buf[r] = token
            if self.step + 1 < self.sizes.max_new:
                self.kept_buf[n] = i
                self.active_buf[n] = r
                self.tokens_buf[n] = token
                self.parents_buf[n] = 0
                n += 1
        return n

    def results(self):
        """Per batch row: [(token_ids, sum of log-probs)], EOS excluded from ids, included in score."""
        return [[(self._history[r, :self._lengths[r]].tolist(), float(self._scores[r]))]
                for r in range(self.sizes.batch)]

# ---------------------------------------------------------------- beam loop
cdef class BeamSearch(_SearchBase):
    """num_beams > 1; semantics in search_ref.BeamSearch (the spec).

    Per row: num_beams live beams (history double-buffered, reordered by
    parents) and the num_beams best finished hyps (stored by slot, ranked by
    an order array so an insertion moves indices, not tokens).
    """
    cdef int64_t* hist_cur        # [batch, beams, max_new]
    cdef int64_t* hist_next
    cdef double* live_score       # [batch, beams]; -inf = dead beam
    cdef Candidate* top           # [batch, 2 * beams] per active position
    cdef int64_t* top_count       # [batch]
    cdef int64_t* fin_tokens      # [batch, beams, max_new] by slot
    cdef int64_t* fin_len         # [batch, beams] by slot
    cdef double* fin_score        # [batch, beams] by slot, normalized
    cdef int64_t* fin_order       # [batch, beams] rank -> slot
    cdef int64_t* fin_count       # [batch]
    cdef int64_t* next_token      # [beams] scratch for one row
    cdef int64_t* next_parent
    cdef double* next_score
    cdef double length_penalty
    cdef int stop_mode            # STOP_HEURISTIC (False) | STOP_AT_K (True) | STOP_EXACT ("never")
    cdef object _fin_tokens_arr, _fin_len_arr, _fin_score_arr, _fin_order_arr, _fin_count_arr

    def __init__(self, params):
        super().__init__(params, params.options.num_beams)
        b, k, m = params.batch_size, params.options.num_beams, params.options.max_new_tokens
        self.length_penalty = params.options.length_penalty
        early = params.options.early_stopping
        self.stop_mode = STOP_EXACT if isinstance(early, str) else (STOP_AT_K if early else STOP_HEURISTIC)
        self.hist_cur = <int64_t*>self._ptr(self._int64(np.zeros((b, k, m))))
        self.hist_next = <int64_t*>self._ptr(self._int64(np.zeros((b, k, m))))
        live = np.full((b, k), -np.inf)
        live[:, 0] = 0.0
        self.live_score = <double*>self._ptr(self._keep(live))
        self.top = <Candidate*>self._ptr(self._keep(np.zeros(b * 2 * k * 16, np.uint8)))
        self.top_count = <int64_t*>self._ptr(self._int64(np.zeros(b)))
        self._fin_tokens_arr = self._int64(np.zeros((b, k, m)))
        self._fin_len_arr = self._int64(np.zeros((b, k)))
        self._fin_score_arr = self._keep(np.zeros((b, k), np.float64))
        self._fin_order_arr = self._int64(np.zeros((b, k)))
        self._fin_count_arr = self._int64(np.zeros(b))
        self.fin_tokens = <int64_t*>self._ptr(self._fin_tokens_arr)
        self.fin_len = <int64_t*>self._ptr(self._fin_len_arr)
        self.fin_score = <double*>self._ptr(self._fin_score_arr)
        self.fin_order = <int64_t*>self._ptr(self._fin_order_arr)
        self.fin_count = <int64_t*>self._ptr(self._fin_count_arr)
        self.next_token = <int64_t*>self._ptr(self._int64(np.zeros(k)))
        self.next_parent = <int64_t*>self._ptr(self._int64(np.zeros(k)))
        self.next_score = <double*>self._ptr(self._keep(np.zeros(k, np.float64)))

    def advance(self, logits):
        """Consume logits float32 [n_active, K, V] (K = 1 at step 0, then num_beams)."""
        cdef const float[:, :, ::1] view = self._check(logits)
        cdef Py_ssize_t masked, survivors = 0, k_fed = view.shape[1]
        with nogil:
            masked = self._candidates(&view[0, 0, 0], k_fed)
            if masked < 0:
                survivors = self._bookkeep()
        if masked >= 0:
            raise all_masked_error(self.step, int(self.active_buf[masked // k_fed]), masked % k_fed)
        self._finish_step(survivors)

    cdef Py_ssize_t _candidates(self, const float* logits, Py_ssize_t k_fed) noexcept nogil:
        """Phase 1, no state change: the top 2*beams (score, beam*V+token) of every active row."""
        cdef Py_ssize_t i, b, t, r, count, v = self.sizes.vocab, k = self.sizes.beams
        cdef Py_ssize_t cap = 2 * k
        cdef double* x = self.scratch.work
        cdef double beam_score, m, lse
        cdef const float* row
        cdef Candidate* top
        cdef LogSoftmax st
        for i in range(self.n_active):
            r = self.active_buf[i]
            top = self.top + i * cap
            count = 0
            for b in range(k_fed):
                beam_score = self.live_score[r * k + b]
                if beam_score == NEG_INF:
                    continue
                row = logits + (i * k_fed + b) * v
                for t in range(v):
                    x[t] = row[t]
                apply_processors(x, self.hist_cur + (r * k + b) * self.sizes.max_new, self.step,
                                 &self.procs, self.scratch.mark)
                if log_softmax_stats(x, v, &st) < 0:
                    return i * k_fed + b
                m = st.max
                lse = st.lse
                for t in range(v):
                    if x[t] != NEG_INF:
                        count = insert_candidate(top, count, cap, beam_score + ((x[t] - m) - lse),
                                                 b * v + t)
            self.top_count[i] = count
        return -1

    cdef Py_ssize_t _bookkeep(self) noexcept nogil:
        """Phase 2: finished hyps, next live beams, row retirement, in-place compaction."""
        cdef Py_ssize_t i, j, r, rank, parent, live, n = 0, k = self.sizes.beams
        cdef Py_ssize_t v = self.sizes.vocab, m = self.sizes.max_new, length = self.step
        cdef int64_t token
        cdef int64_t* src
        cdef int64_t* dst
        cdef int64_t* swap
        cdef Candidate* top
        cdef bint done
        for i in range(self.n_active):
            r = self.active_buf[i]
            top = self.top + i * 2 * k
            live = 0
            for rank in range(self.top_count[i]):
                parent = top[rank].index // v
                token = top[rank].index - parent * v
                src = self.hist_cur + (r * k + parent) * m
                if self.procs.is_eos[token]:
                    if rank < k:
                        self._keep_finished(r, src, length, top[rank].score, length + 1)
                    continue
                dst = self.hist_next + (r * k + live) * m
                memcpy(dst, src, length * sizeof(int64_t))
                dst[length] = token
                self.next_token[live] = token
                self.next_parent[live] = parent
                self.next_score[live] = top[rank].score
                live += 1
                if live == k:
                    break
            if length + 1 == m:
                for j in range(live):
                    self._keep_finished(r, self.hist_next + (r * k + j) * m, length + 1,
                                        self.next_score[j], length + 1)
                done = True
            elif live == 0:
                done = True
            else:
                for j in range(live, k):
                    self.next_token[j] = self.next_token[0]
                    self.next_parent[j] = self.next_parent[0]
                    self.next_score[j] = NEG_INF
                done = self._row_done(r, self.next_score[0], length + 1)
            if not done:
                for j in range(k):
                    self.live_score[r * k + j] = self.next_score[j]
                    self.tokens_buf[n * k + j] = self.next_token[j]
                    self.parents_buf[n * k + j] = self.next_parent[j]
                self.kept_buf[n] = i
                self.active_buf[n] = r
                n += 1
        swap = self.hist_cur
        self.hist_cur = self.hist_next
        self.hist_next = swap
        return n

    cdef void _keep_finished(self, Py_ssize_t r, const int64_t* tokens, Py_ssize_t n_tokens,
                             double score, Py_ssize_t length) noexcept nogil:
        """Keep the hyp if it is among the beams best (ties: the earlier one stays ahead)."""
        cdef Py_ssize_t k = self.sizes.beams, count = self.fin_count[r], slot, at
        cdef int64_t* order = self.fin_order + r * k
        cdef double* scores = self.fin_score + r * k
        cdef double normalized = score / pow(<double>length, self.length_penalty)
        if count == k:
            slot = order[k - 1]
            if not normalized > scores[slot]:
                return
            count -= 1
        else:
            slot = count
        at = count
        while at > 0 and scores[order[at - 1]] < normalized:
            order[at] = order[at - 1]
            at -= 1
        order[at] = slot
        scores[slot] = normalized
        self.fin_len[r * k + slot] = n_tokens
        memcpy(self.fin_tokens + (r * k + slot) * self.sizes.max_new, tokens,
               n_tokens * sizeof(int64_t))
        self.fin_count[r] = count + 1

    cdef bint _row_done(self, Py_ssize_t r, double best_live, Py_ssize_t live_length) noexcept nogil:
        cdef Py_ssize_t k = self.sizes.beams, best_length
        if self.fin_count[r] < k:
            return False
        if self.stop_mode == STOP_AT_K:
            return True
        if self.stop_mode == STOP_EXACT:
            best_length = self.sizes.max_new if self.length_penalty > 0 else live_length + 1
        else:
            best_length = live_length
        return (best_live / pow(<double>best_length, self.length_penalty)
                <= self.fin_score[r * k + self.fin_order[r * k + k - 1]])

    def results(self):
        """Per batch row: up to num_return_sequences (token_ids, normalized score), best first."""
        n_ret = self.params.options.num_return_sequences
        out = []
        for r in range(self.sizes.batch):
            hyps = []
            for rank in range(min(n_ret, int(self._fin_count_arr[r]))):
                slot = self._fin_order_arr[r, rank]
                hyps.append((self._fin_tokens_arr[r, slot, :self._fin_len_arr[r, slot]].tolist(),
                             float(self._fin_score_arr[r, slot])))
            out.append(hyps)
        return out


def make_search(options, batch_size, vocab_size, bos_id, eos_ids):
    """GreedySearch when num_beams == 1 (sampling when do_sample), else BeamSearch."""
    params = resolve_params(options, batch_size, vocab_size, bos_id, eos_ids)
    if params.options.num_beams == 1:
        return GreedySearch(params)
    return BeamSearch(params)
