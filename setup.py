# setup.py has one job: build the C core (csrc/) with cffi in API mode.
# Everything else about the package lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["csrc/build_native.py:ffibuilder"])
