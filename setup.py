"""Build of tdn_ops._C: the C++ CPU kernels always, the CUDA kernels where they can be built.

Environment switches:
  TDN_OPS_CUDA=auto|1|0   build the CUDA kernels: when torch has CUDA and nvcc is found (auto,
                          the default), always (1: fail if impossible), or never (0).
  TDN_OPS_NATIVE=0        build no extension at all (pure-Python install; reference backend).
  TDN_OPS_DEBUG=1         -O0 -g instead of -O3.
"""

import glob
import os
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _fail(message: str) -> None:
    sys.stderr.write(f"\ntdn_ops build error: {message}\n\n")
    sys.exit(1)


def _extensions():
    if os.environ.get("TDN_OPS_NATIVE", "1") == "0":
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        _fail("PyTorch must be installed before tdn_ops is built, and the build must see it: "
              "`pip install torch==2.13.0` (or your CUDA build), then "
              "`pip install --no-build-isolation .`")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        _fail("no C++ compiler found (looked for $CXX or `c++`); install g++ or clang++, or "
              "set TDN_OPS_NATIVE=0 for a pure-Python install on the reference backend")

    want_cuda = os.environ.get("TDN_OPS_CUDA", "auto")
    if want_cuda not in ("auto", "0", "1"):
        _fail(f"TDN_OPS_CUDA must be auto, 0 or 1, got {want_cuda!r}")
    cuda_possible = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if want_cuda == "1" and not cuda_possible:
        _fail("TDN_OPS_CUDA=1 but the CUDA kernels cannot be built: "
              f"torch.version.cuda={torch.version.cuda}, CUDA_HOME={cpp_extension.CUDA_HOME}")
    with_cuda = want_cuda == "1" or (want_cuda == "auto" and cuda_possible)

    debug = os.environ.get("TDN_OPS_DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx_flags = opt + ["-std=c++17", "-fopenmp", "-fvisibility=hidden", "-fno-trapping-math"]
    sources = [os.path.join("csrc", "tdn_ops.cpp"), os.path.join("csrc", "autograd.cpp")]
    sources += sorted(glob.glob("csrc/cpu/*.cpp"))
    extra = {"cxx": cxx_flags}
    ext_cls = cpp_extension.CppExtension
    define_macros = []
    if with_cuda:
        ext_cls = cpp_extension.CUDAExtension
        sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
        extra["nvcc"] = opt + ["-std=c++17", "--use_fast_math", "-lineinfo"]
        define_macros.append(("TDN_OPS_WITH_CUDA", "1"))
    ext = ext_cls(
        "tdn_ops._C",
        sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args=extra,
        extra_link_args=["-fopenmp"],
        define_macros=define_macros,
        py_limited_api=True,
    )
    cmdclass = {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}
    return [ext], cmdclass


ext_modules, cmdclass = _extensions()

setup(
    packages=find_packages(include=["tdn_ops", "tdn_ops.*", "tdn", "tdn.*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if ext_modules else {},
)
