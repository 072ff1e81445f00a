"""Packaging of sbps: the marshal daemon, the sbpsctl admin CLI and the configfs emulation."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="sbps",
    version="0.1.0",
    description="Boot-content projection service for diskless HPC clusters (SBPS marshal)",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["sbps", "sbps.*", "configfs", "configfs.*"]),
    package_data={"sbps": ["py.typed", "publish/http/*.yaml"]},
    install_requires=[
        "aiohttp>=3.9,<4",
        "boto3>=1.28,<2",
        "dnspython>=2.4,<3",
        "prometheus-client>=0.17,<1",
        # node.k8s_kubeconfig: a kubeconfig is YAML (kubeadm's admin.conf).
        "PyYAML>=6,<7",
        "rtslib-fb>=2.1.69,<3",
    ],
    extras_require={
        "configfs": ["mfusepy>=1.1,<4"],
        # sbpsctl demo: the development S3 server and a userspace initiator.
        "demo": ["moto[server]>=5,<6", "cython-iscsi>=1.0,<2"],
    },
    entry_points={
        "console_scripts": [
            "sbps-marshal = sbps.daemon.main:run",
            "sbpsctl = sbps.cli:run",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Operating System :: POSIX :: Linux",
        "Topic :: System :: Boot",
    ],
)
