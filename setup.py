"""Builds the Cython search core (csrc/*.pyx) into ltg_engine._search.

One compiler-directive policy for every module. LTG_DEBUG=1 turns bounds and
wraparound checks back on; LTG_ANNOTATE=1 writes cython -a HTML next to the
sources so Python interaction inside the hot loop is visible.
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LTG_DEBUG", "0") == "1"
ANNOTATE = os.environ.get("LTG_ANNOTATE", "0") == "1"

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "nonecheck": DEBUG,
}

extensions = [
    Extension(
        "ltg_engine._search",
        sources=["csrc/search.pyx"],
        include_dirs=[np.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"] if not DEBUG else ["-O0", "-g"],
    )
]

setup(
    packages=["ltg_engine", "ltg_engine.training", "ltg_engine.export"],
    package_dir={"ltg_engine.export": "export"},
    package_data={"ltg_engine": ["models/*/*"]},
    ext_modules=cythonize(
        extensions,
        compiler_directives=DIRECTIVES,
        annotate=ANNOTATE,
        include_path=["csrc"],
    ),
    zip_safe=False,
)
