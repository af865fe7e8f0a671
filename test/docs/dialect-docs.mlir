// The build generates each dialect's reference from its ODS into the build
// tree (docs/README.md links there); nothing is copied by hand.
// RUN: FileCheck %s --check-prefix=MOE --input-file=%moec_obj_root/docs/Dialects/MoeDialect.md
// RUN: FileCheck %s --check-prefix=QNT --input-file=%moec_obj_root/docs/Dialects/QntDialect.md
// MOE: 'moe' Dialect
// MOE-DAG: `moe.route`
// MOE-DAG: `moe.dispatch`
// MOE-DAG: `moe.expert_ffn`
// MOE-DAG: `moe.combine`
// MOE-DAG: `moe.shared_expert`
// MOE-DAG: `moe.experts`
// MOE-DAG: `moe.prefetch`
// MOE-DAG: PlacementAttr
// MOE-DAG: `moe.embed`
// MOE-DAG: `moe.rms_norm`
// MOE-DAG: `moe.rope`
// MOE-DAG: `moe.attention`
// QNT: 'qnt' Dialect
// QNT-DAG: `qnt.quantize`
// QNT-DAG: `qnt.dequantize`
// QNT-DAG: `qnt.matmul`
// QNT-DAG: `qnt.repack`
// QNT-DAG: `qnt.weight`
// QNT-DAG: QuantizedTensorType
