"""Random variables: moments (expect, variance, covariance) in closed form."""

from dlsym.sections.random._section import build as build
