"""Recurrences: back-propagation through time with a symbolic horizon."""

from dlsym.sections.recurrence._section import build as build
