"""Builds the Cython extensions in _ext/ into the gpuhil package (gpuhil._<name>)."""
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
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
