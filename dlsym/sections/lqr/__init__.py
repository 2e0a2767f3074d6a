"""lqr"""

from dlsym.sections.lqr._section import build as build
