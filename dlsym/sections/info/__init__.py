"""info"""

from dlsym.sections.info._section import build as build
