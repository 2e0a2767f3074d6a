"""The verification kit every section and ``dlsym check`` share: one sampler per domain,
one comparison, one report, one device choice."""

from dlsym.verify._device import jax_device as jax_device
from dlsym.verify._report import Check as Check
from dlsym.verify._report import VerificationReport as VerificationReport
from dlsym.verify._report import compare as compare
from dlsym.verify._report import report as report
from dlsym.verify._sampling import SAMPLERS as SAMPLERS
from dlsym.verify._sampling import sample_points as sample_points
from dlsym.verify._tolerance import TOLERANCES as TOLERANCES
from dlsym.verify._tolerance import tolerance as tolerance
