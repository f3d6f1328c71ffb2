"""The seam the packages above ``losses`` build on: the input contract, reduction, fused core.

``metrics``, ``gradcheck`` and ``parallel`` take these names from here, never from a private
module of ``losses``, so that the losses' internals can move without breaking them. Each name
is documented where it is defined.
"""

from xentax.losses import _doc, _frame
from xentax.losses._common import compute_dtype as compute_dtype
from xentax.losses._common import nan_where as nan_where
from xentax.losses._common import psum_if_varying as psum_if_varying
from xentax.losses._common import safe_mul as safe_mul
from xentax.losses._common import varying_like as varying_like
from xentax.losses._fused import fused_linear_cross_entropy_impl as fused_linear_cross_entropy_impl
from xentax.losses._reduce import check_reduction as check_reduction
from xentax.losses._reduce import reduce_losses as reduce_losses
from xentax.losses._rows import logsumexp as logsumexp
from xentax.losses._sparse import prepare_sparse as prepare_sparse
from xentax.losses._sparse_terms import SparseOptions as SparseOptions
from xentax.losses._sparse_terms import prepare_labels as prepare_labels
from xentax.losses._validate import axis_size as axis_size
from xentax.losses._validate import broadcast_mask as broadcast_mask
from xentax.losses._validate import broadcast_param as broadcast_param
from xentax.losses._validate import check_example_shape as check_example_shape
from xentax.losses._validate import check_num_classes as check_num_classes
from xentax.losses._validate import check_same_shape as check_same_shape
from xentax.losses._validate import check_values as check_values
from xentax.losses._validate import class_weight_vector as class_weight_vector
from xentax.losses._validate import finite_param as finite_param
from xentax.losses._validate import float_array as float_array
from xentax.losses._validate import id_vector as id_vector
from xentax.losses._validate import integer_labels as integer_labels
from xentax.losses._validate import normalize_axis as normalize_axis
from xentax.losses._validate import numeric_array as numeric_array
from xentax.losses._validate import option as option
from xentax.losses._validate import options as options
from xentax.losses._validate import positive_int as positive_int
from xentax.losses._validate import sample_weights as sample_weights
from xentax.losses._validate import to_array as to_array

# The entry frame of a public loss (a decorator): its docstring and foreign keywords.
loss_entry = _frame.loss
# Fill a docstring's ``$name`` lines from a package's own paragraphs (``paragraphs=``).
shared_docstring = _doc.shared
