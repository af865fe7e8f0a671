// moec-opt registers our dialects beside the upstream ones the pipeline uses.
// RUN: moec-opt --show-dialects | FileCheck %s
// CHECK: Available Dialects: arith
// CHECK-SAME: ,func
// CHECK-SAME: ,linalg
// CHECK-SAME: ,moe,qnt,
// CHECK-SAME: ,tensor
