# splitmix64, bit-identical to ltg_engine.search_ref.rng_init / rng_uniform.
from libc.stdint cimport uint64_t

cdef inline uint64_t splitmix64_mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t rng_init(uint64_t seed, uint64_t row) noexcept nogil:
    return splitmix64_mix(seed + row * <uint64_t>0x9E3779B97F4A7C15ULL)


cdef inline double rng_uniform(uint64_t* state) noexcept nogil:
    """u in [0, 1) from the top 53 bits of the next output; advances *state."""
    state[0] = state[0] + <uint64_t>0x9E3779B97F4A7C15ULL
    return <double>(splitmix64_mix(state[0]) >> 11) * (1.0 / 9007199254740992.0)
