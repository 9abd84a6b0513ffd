# The search core's header: sizes, processor parameters and scratch space as C structs.
from libc.stdint cimport int64_t, uint8_t


cdef struct Sizes:
    Py_ssize_t batch          # original batch rows
    Py_ssize_t beams          # hypotheses kept per row (1 for greedy)
    Py_ssize_t vocab
    Py_ssize_t max_new        # max_new_tokens: history buffers hold this many tokens


cdef struct Processors:
    double repetition_penalty     # 1.0 = off
    Py_ssize_t no_repeat_ngram    # 0 = off
    Py_ssize_t min_new_tokens     # eos held back while fewer tokens were generated
    const int64_t* banned_ids     # sorted, unique
    Py_ssize_t n_banned
    const int64_t* eos_ids        # sorted, unique
    Py_ssize_t n_eos
    const uint8_t* is_eos         # [vocab] 1 for eos ids


cdef struct Sampler:
    bint enabled
    double temperature
    Py_ssize_t top_k              # 0 = off
    double top_p                  # 1.0 = off


cdef struct Candidate:
    double score
    int64_t index                 # token id, or beam * vocab + token


cdef struct Scratch:
    double* work                  # [vocab] processed logits of one hypothesis
    uint8_t* mark                 # [vocab] zero between uses (repetition penalty)
    Candidate* cands              # [vocab] sampling candidates
    double* weights               # [vocab] sampling weights


cdef struct LogSoftmax:
    double max
    double lse                    # log of sum(exp(x - max))
    Py_ssize_t argmax             # first index of the max
