"""Maps the generated protocol package (generated/suretynet) beside the hand-written ones.

setup.cfg holds the metadata; this file only exists because setup.cfg cannot express a
package tree that lives under a different directory than its import root.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["nodes*", "storage*"])
    + find_namespace_packages("generated", include=["suretynet*"]),
    package_dir={"suretynet": "generated/suretynet"},
    # The commented descriptor set that the nodes' reflection service serves.
    # The operator console's page, script and style sheet (nodes/operator/console.py).
    package_data={
        "suretynet": ["descriptors.binpb"],
        "nodes.operator": ["console_static/*"],
    },
)
