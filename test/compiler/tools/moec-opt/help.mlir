// --help lists the passes moec-opt can run, upstream's generic ones included.
// RUN: moec-opt --help | FileCheck %s
// CHECK: Passes:
// CHECK-DAG: --canonicalize
// CHECK-DAG: --cse
