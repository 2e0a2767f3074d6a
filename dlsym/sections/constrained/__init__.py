"""constrained"""

from dlsym.sections.constrained._section import build as build
