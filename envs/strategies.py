"""The vector-env strategies (``vector_strategy``), in a module of their own so that mtrl.config
can type the key without importing gymnasium or Meta-World; envs.vector.make_vector_env says what
each builds."""

from typing import Literal, get_args

VectorStrategy = Literal["auto", "sync", "async"]  # auto: Meta-World's fast path, gymnasium's sync
VECTOR_STRATEGIES: tuple[VectorStrategy, ...] = get_args(VectorStrategy)
