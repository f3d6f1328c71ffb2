"""Test set-up: 8 CPU devices for sharding tests, and float64 available everywhere.

x64 is on for the whole suite so that float64 references and ``check_grads`` run in
float64; float32 tests pass float32 arrays explicitly, which also checks that no
default-dtype constant promotes a float32 loss to float64.
"""

import jax

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_enable_x64", True)
