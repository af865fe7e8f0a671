//===- QntDialect.cpp - qnt dialect, types and attributes -----------------===//

#include "dialects/qnt/IR/QntDialect.h"
#include "dialects/qnt/IR/QntOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/MathExtras.h"

using namespace mlir;
using namespace moec::qnt;

#include "dialects/qnt/IR/QntOpsDialect.cpp.inc"
#include "dialects/qnt/IR/QntEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/qnt/IR/QntAttrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/qnt/IR/QntTypes.cpp.inc"

void QntDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/qnt/IR/QntOps.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/qnt/IR/QntTypes.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/qnt/IR/QntAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// Format facts
//===----------------------------------------------------------------------===//

bool moec::qnt::isGgufFormat(QuantFormat format) {
  switch (format) {
  case QuantFormat::Int2:
  case QuantFormat::Int3:
  case QuantFormat::Int4:
  case QuantFormat::Int8:
    return false;
  default:
    return true;
  }
}

unsigned moec::qnt::getOwnFormatBits(QuantFormat format) {
  switch (format) {
  case QuantFormat::Int2:
    return 2;
  case QuantFormat::Int3:
    return 3;
  case QuantFormat::Int4:
    return 4;
  case QuantFormat::Int8:
    return 8;
  default:
    llvm_unreachable("not an own group-wise format");
  }
}

// Block sizes and byte counts follow GGUF's block structs (ggml-common.h):
// QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK_MXFP4 = 32, QK_K = 256.
int64_t moec::qnt::getGgufBlockSize(QuantFormat format) {
  switch (format) {
  case QuantFormat::Q4_0:
  case QuantFormat::Q4_1:
  case QuantFormat::Q5_0:
  case QuantFormat::Q5_1:
  case QuantFormat::Q8_0:
  case QuantFormat::MXFP4:
    return 32;
  case QuantFormat::Q2_K:
  case QuantFormat::Q3_K:
  case QuantFormat::Q4_K:
  case QuantFormat::Q5_K:
  case QuantFormat::Q6_K:
    return 256;
  default:
    llvm_unreachable("not a GGUF format");
  }
}

int64_t moec::qnt::getGgufBlockBytes(QuantFormat format) {
  constexpr int64_t f16 = 2, qk = 32, qkK = 256, kScaleBytes = 12;
  switch (format) {
  case QuantFormat::Q4_0: // d, 32 x 4-bit
    return f16 + qk / 2;
  case QuantFormat::Q4_1: // d, m, 32 x 4-bit
    return 2 * f16 + qk / 2;
  case QuantFormat::Q5_0: // d, 32 high bits, 32 x 4-bit
    return f16 + 4 + qk / 2;
  case QuantFormat::Q5_1: // d, m, 32 high bits, 32 x 4-bit
    return 2 * f16 + 4 + qk / 2;
  case QuantFormat::Q8_0: // d, 32 x 8-bit
    return f16 + qk;
  case QuantFormat::MXFP4: // e8m0 scale, 32 x fp4 (e2m1)
    return 1 + qk / 2;
  case QuantFormat::Q2_K: // 16 x (4-bit scale, 4-bit min), 256 x 2-bit, d, dmin
    return qkK / 16 + qkK / 4 + 2 * f16;
  case QuantFormat::Q3_K: // 256 high bits, 256 x 2-bit, 12 scale bytes, d
    return qkK / 8 + qkK / 4 + kScaleBytes + f16;
  case QuantFormat::Q4_K: // d, dmin, 12 scale bytes, 256 x 4-bit
    return 2 * f16 + kScaleBytes + qkK / 2;
  case QuantFormat::Q5_K: // d, dmin, 12 scale bytes, 256 high bits, 4-bit
    return 2 * f16 + kScaleBytes + qkK / 8 + qkK / 2;
  case QuantFormat::Q6_K: // 256 x 4 low bits, 256 x 2 high bits, 16 scales, d
    return qkK / 2 + qkK / 4 + qkK / 16 + f16;
  default:
    llvm_unreachable("not a GGUF format");
  }
}

LogicalResult moec::qnt::verifyWeightStoreType(
    llvm::function_ref<InFlightDiagnostic()> emitError, Type type) {
  if (auto quantized = dyn_cast<QuantizedTensorType>(type)) {
    if (!quantized.hasStaticShape())
      return emitError() << "weights must have a static shape, got " << type;
    return success();
  }
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return emitError()
           << "weights must be a ranked tensor or a quantized tensor, got "
           << type;
  if (!tensor.hasStaticShape())
    return emitError() << "weights must have a static shape, got " << type;
  if (llvm::is_contained(tensor.getShape(), 0))
    return emitError() << "weights must not have a zero-sized dimension, got "
                       << type;
  if (!tensor.getElementType().isIntOrFloat())
    return emitError() << "weights must have a float or integer element type, "
                          "got "
                       << type;
  return success();
}

//===----------------------------------------------------------------------===//
// WeightRefAttr
//===----------------------------------------------------------------------===//

LogicalResult
WeightRefAttr::verify(llvm::function_ref<InFlightDiagnostic()> emitError,
                      StringRef name, Type type) {
  if (name.empty())
    return emitError() << "weight name must not be empty";
  return verifyWeightStoreType(emitError, type);
}

//===----------------------------------------------------------------------===//
// QuantizedTensorType
//===----------------------------------------------------------------------===//

int64_t QuantizedTensorType::getBlockSize() const {
  return isGgufFormat(getFormat()) ? getGgufBlockSize(getFormat())
                                   : static_cast<int64_t>(getGroup());
}

int64_t QuantizedTensorType::getBlockBytes() const {
  if (isGgufFormat(getFormat()))
    return getGgufBlockBytes(getFormat());
  // Own formats: the packed codes of one group, its f16 scale and, when
  // asymmetric, its f16 min. The group is a multiple of 8, so the codes fill
  // whole bytes for every bit width.
  int64_t codeBytes =
      static_cast<int64_t>(getGroup()) * getOwnFormatBits(getFormat()) / 8;
  return codeBytes + 2 + (getAsymmetric() ? 2 : 0);
}

int64_t QuantizedTensorType::getStorageBytes() const {
  assert(hasStaticShape() && "storage size of a dynamically shaped tensor");
  int64_t rows = 1;
  for (int64_t dim : getShape().drop_back())
    rows *= dim;
  return rows * getRowBytes();
}

QuantizedTensorType
QuantizedTensorType::withInterleave(unsigned interleave) const {
  return get(getContext(), getShape(), getFormat(), getGroup(),
             getAsymmetric(), interleave);
}

QuantizedTensorType
QuantizedTensorType::withShape(ArrayRef<int64_t> shape) const {
  return get(getContext(), shape, getFormat(), getGroup(), getAsymmetric(),
             getInterleave());
}

LogicalResult
QuantizedTensorType::verify(llvm::function_ref<InFlightDiagnostic()> emitError,
                            ArrayRef<int64_t> shape, QuantFormat format,
                            unsigned group, bool asymmetric,
                            unsigned interleave) {
  StringRef name = stringifyQuantFormat(format);
  if (shape.empty())
    return emitError() << "quantized tensor needs at least one dimension";
  for (int64_t dim : shape)
    if (dim != ShapedType::kDynamic && dim <= 0)
      return emitError() << "dimension sizes must be positive or dynamic, got "
                         << dim;
  if (shape.back() == ShapedType::kDynamic)
    return emitError() << "the innermost (blocked) dimension must be static";

  int64_t blockSize;
  if (isGgufFormat(format)) {
    blockSize = getGgufBlockSize(format);
    if (group != 0)
      return emitError() << "format " << name
                         << " takes no group size: its blocks have "
                         << blockSize << " elements";
    if (asymmetric)
      return emitError() << "format " << name
                         << " has no asymmetric variant";
  } else {
    if (group == 0)
      return emitError() << "format " << name << " requires a group size";
    if (group % 8 != 0)
      return emitError() << "group size must be a positive multiple of 8, got "
                         << group;
    blockSize = group;
  }
  if (shape.back() % blockSize != 0)
    return emitError() << "innermost dimension " << shape.back()
                       << " is not a multiple of the block size " << blockSize
                       << " of format " << name;

  if (interleave == 0 || !llvm::isPowerOf2_32(interleave))
    return emitError() << "interleave must be a power of two, got "
                       << interleave;
  if (interleave > 1) {
    if (shape.size() < 2 || shape[shape.size() - 2] == ShapedType::kDynamic ||
        shape[shape.size() - 2] % interleave != 0)
      return emitError() << "interleave " << interleave
                         << " needs a static row dimension that is a multiple "
                            "of it";
  }
  return success();
}

// !qnt.tensor<SHAPE, FORMAT[, group = G][, asymmetric][, interleave = N]>
Type QuantizedTensorType::parse(AsmParser &parser) {
  SmallVector<int64_t> shape;
  StringRef formatName;
  SMLoc formatLoc;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/true,
                                /*withTrailingX=*/false) ||
      parser.parseComma())
    return {};
  formatLoc = parser.getCurrentLocation();
  if (parser.parseKeyword(&formatName))
    return {};
  std::optional<QuantFormat> format = symbolizeQuantFormat(formatName);
  if (!format) {
    parser.emitError(formatLoc) << "unknown quantization format '"
                                << formatName << "'";
    return {};
  }

  unsigned group = 0, interleave = 1;
  bool asymmetric = false;
  llvm::SmallDenseSet<StringRef> seen;
  while (succeeded(parser.parseOptionalComma())) {
    StringRef key;
    SMLoc keyLoc = parser.getCurrentLocation();
    if (parser.parseKeyword(&key))
      return {};
    if (!seen.insert(key).second) {
      parser.emitError(keyLoc) << "'" << key << "' given twice";
      return {};
    }
    if (key == "asymmetric") {
      asymmetric = true;
    } else if (key == "group" || key == "interleave") {
      unsigned value;
      if (parser.parseEqual() || parser.parseInteger(value))
        return {};
      (key == "group" ? group : interleave) = value;
    } else {
      parser.emitError(keyLoc)
          << "expected 'group', 'asymmetric' or 'interleave', got '" << key
          << "'";
      return {};
    }
  }
  if (parser.parseGreater())
    return {};
  return parser.getChecked<QuantizedTensorType>(
      parser.getContext(), shape, *format, group, asymmetric, interleave);
}

void QuantizedTensorType::print(AsmPrinter &printer) const {
  printer << "<";
  printer.printDimensionList(getShape());
  printer << ", " << stringifyQuantFormat(getFormat());
  if (getGroup() != 0)
    printer << ", group = " << getGroup();
  if (getAsymmetric())
    printer << ", asymmetric";
  if (getInterleave() != 1)
    printer << ", interleave = " << getInterleave();
  printer << ">";
}
