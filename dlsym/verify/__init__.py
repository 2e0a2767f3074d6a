"""The verification kit every section and ``dlsym check`` share: one sampler per domain,
one tolerance policy per dtype, one comparison, one report, one device choice."""

from dlsym.verify._device import DTYPES as DTYPES
from dlsym.verify._device import as_dtype as as_dtype
from dlsym.verify._device import computed as computed
from dlsym.verify._device import jax_device as jax_device
from dlsym.verify._device import on_device as on_device
from dlsym.verify._report import Check as Check
from dlsym.verify._report import VerificationReport as VerificationReport
from dlsym.verify._report import compare as compare
from dlsym.verify._report import report as report
from dlsym.verify._sampling import EXTREMES as EXTREMES
from dlsym.verify._sampling import LAW_SAMPLERS as LAW_SAMPLERS
from dlsym.verify._sampling import SAMPLERS as SAMPLERS
from dlsym.verify._sampling import TANGENTS as TANGENTS
from dlsym.verify._sampling import at_extremes as at_extremes
from dlsym.verify._sampling import draw as draw
from dlsym.verify._sampling import draw_law as draw_law
from dlsym.verify._sampling import drawing as drawing
from dlsym.verify._sampling import draws_within as draws_within
from dlsym.verify._sampling import generator as generator
from dlsym.verify._sampling import interval as interval
from dlsym.verify._sampling import redrawn as redrawn
from dlsym.verify._sampling import sample_points as sample_points
from dlsym.verify._text import NotRead as NotRead
from dlsym.verify._text import text_reader as text_reader
from dlsym.verify._tolerance import ITERATION_TOL as ITERATION_TOL
from dlsym.verify._tolerance import SAFETY as SAFETY
from dlsym.verify._tolerance import SETTLED_TOL as SETTLED_TOL
from dlsym.verify._tolerance import TOLERANCES as TOLERANCES
from dlsym.verify._tolerance import cancellation_bound as cancellation_bound
from dlsym.verify._tolerance import check_tolerance as check_tolerance
from dlsym.verify._tolerance import check_tolerance_why as check_tolerance_why
from dlsym.verify._tolerance import solver_tolerance as solver_tolerance
from dlsym.verify._tolerance import tolerance as tolerance
