"""mdp"""

from dlsym.sections.mdp._section import build as build
