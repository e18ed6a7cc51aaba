"""Builds the Cython extensions in _ext/ into the gpuhil package (gpuhil._<name>)."""
import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
EXT = HERE / "_ext"


def extensions() -> list[Extension]:
    return [
        Extension(
            f"gpuhil._{pyx.stem}",
            [str(pyx.relative_to(HERE))],
            include_dirs=[str(EXT / "include")],
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
        )
        for pyx in sorted(EXT.glob("*.pyx"))
    ]


setup(
    ext_modules=cythonize(
        extensions(),
        include_path=[str(EXT)],
        # The lab builds the guest's extensions from the same tree with another Cython and
        # Python; a separate build_dir keeps its generated C away from the host's.
        build_dir=os.environ.get("GPUHIL_CYTHON_BUILD_DIR"),
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
