from pathlib import Path

from setuptools import setup

here = Path(__file__).parent
version = {}
exec((here / "waiter_service" / "__init__.py").read_text(), version)

setup(
    name="waiter_service",
    version=version["__version__"],
    description="Long-running programs as CloudFlow asynchronous SOAP services (Spyne on Twisted)",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11,<3.12",
    packages=[
        "waiter_service",
        "waiter_service.programs",
        "waiter_service.runs",
        "waiter_service.soap",
        "twisted.plugins",
    ],
    # twistd finds plugins only in twisted/plugins/ on sys.path: install
    # twisted_plugins/*.py there (and no __init__.py of ours).
    package_dir={"twisted.plugins": "twisted_plugins"},
    install_requires=[
        "spyne==2.14.0",
        "Twisted[tls]>=24.11,<27",
        "constantly>=15.1",
        "lxml>=5.2,<7",
        "zope.interface>=6",
    ],
    extras_require={
        "test": [
            "zeep>=4.3,<5",
            "ruff>=0.6,<1",
            "mypy>=1.10,<3",
        ],
    },
    entry_points={
        "console_scripts": ["waiter=waiter_service.programs.waiter_main:console_main"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
    ],
)
