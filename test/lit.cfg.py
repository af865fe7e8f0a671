# -*- Python -*-
# lit configuration for moec's IR tests.

import os

import lit.formats
import lit.util

config.name = "moec"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moec_obj_root, "test")
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]

# Tools are found by absolute path: moec's from the build tree, FileCheck,
# not and split-file from LLVM 22 (never an older one that happens to be on
# PATH).
# A tool name is replaced only where it stands alone (not inside a path or a
# longer name: "moec" must not match in ".../moec-opt").
for tool in ["moec-opt", "moec"]:
    config.substitutions.append(
        (r"(?<![-\w/.])%s(?![-\w])" % tool,
         os.path.join(config.moec_tools_dir, tool)))
for tool in ["FileCheck", "not", "split-file", "llvm-nm", "llvm-objdump"]:
    config.substitutions.append(
        (r"\b%s\b" % tool, os.path.join(config.llvm_tools_dir, tool)))
config.substitutions.append(("%python", config.python))
config.substitutions.append(("%moec_obj_root", config.moec_obj_root))
config.substitutions.append(("%moec_src_root", config.moec_src_root))
