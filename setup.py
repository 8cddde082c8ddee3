from pathlib import Path

from setuptools import find_packages, setup

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
    python_requires=">=3.10,<3.14",
    packages=[*find_packages(include=["waiter_service", "waiter_service.*"]), "twisted.plugins"],
    # twistd finds plugins only in twisted/plugins/ on sys.path: install
    # twisted_plugins/*.py there (and no __init__.py of ours).
    package_dir={"twisted.plugins": "twisted_plugins"},
    install_requires=[
        "spyne==2.14.0",
        # Spyne 2.14 imports cgi, which Python 3.13 no longer has.
        'legacy-cgi>=2.6,<3; python_version >= "3.13"',
        "Twisted[tls]>=26.10,<27",
        "constantly>=23.10,<24",
        "lxml>=6.2,<7",
        "zope.interface>=7,<9",
        # /metrics
        "prometheus-client>=0.26,<0.27",
        # waiter-client
        "zeep>=4.3.3,<5",
    ],
    extras_require={
        "test": [
            "requests>=2.32,<3",
            "ruff>=0.17,<0.18",
            "mypy>=2.4,<3",
            "mypy-zope>=1.0.17,<2",
            # the status pages in headless Chromium (Debian's chromium-driver)
            "selenium>=4.51,<4.52",
        ],
    },
    entry_points={
        "console_scripts": [
            "waiter=waiter_service.programs.waiter_main:console_main",
            "waiter-client=waiter_service.client.main:main",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX :: Linux",
    ],
)
