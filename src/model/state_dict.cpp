#include "fundus/model/state_dict.h"

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"
#include "fundus/model/zip_archive.h"

namespace fundus {

namespace {

// ---- storage dtypes ---------------------------------------------------------------------------

struct StorageType {
  const char* name;  // pickle global, e.g. "torch.FloatStorage"
  torch::ScalarType dtype;
  uint64_t element_size;  // bytes, known before any tensor is allocated
};
constexpr StorageType kStorageTypes[] = {
    {"torch.FloatStorage", torch::kFloat, 4}, {"torch.DoubleStorage", torch::kDouble, 8},
    {"torch.HalfStorage", torch::kHalf, 2},   {"torch.BFloat16Storage", torch::kBFloat16, 2},
    {"torch.LongStorage", torch::kLong, 8},   {"torch.IntStorage", torch::kInt, 4},
    {"torch.ShortStorage", torch::kShort, 2}, {"torch.CharStorage", torch::kChar, 1},
    {"torch.ByteStorage", torch::kByte, 1},   {"torch.BoolStorage", torch::kBool, 1},
};

// Bounds on what a state_dict entry may declare, checked before allocating (a hostile file must not
// make LibTorch allocate terabytes or abort with a stack trace).
constexpr size_t kMaxTensorDims = 32;
constexpr int kMaxNesting = 64;  // dicts within dicts (nested checkpoints); also stops reference cycles

const StorageType* storage_type_by_name(const std::string& name) {
  for (const auto& t : kStorageTypes)
    if (name == t.name) return &t;
  return nullptr;
}

const StorageType* storage_type_by_dtype(torch::ScalarType dtype) {
  for (const auto& t : kStorageTypes)
    if (dtype == t.dtype) return &t;
  return nullptr;
}

// ---- the pickle virtual machine -----------------------------------------------------------------

struct PyValue;
using Py = std::shared_ptr<PyValue>;

struct PyValue {
  enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Tensor, Storage, Other };
  Kind kind = Kind::None;
  int64_t i = 0;  // Bool, Int
  double f = 0;
  std::string s;                           // Str; Global / Other: "module.name"
  std::vector<Py> items;                   // Tuple, List
  std::vector<std::pair<Py, Py>> entries;  // Dict (insertion order)
  torch::Tensor tensor;                    // Tensor, Storage (1-D)
};

const char* kind_name(PyValue::Kind k) {
  static const char* names[] = {"None", "bool", "int",    "float",  "str",     "tuple",
                                "list", "dict", "global", "tensor", "storage", "object"};
  return names[static_cast<int>(k)];
}

std::string join_ints(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() > 8 ? ", ...)" : ")");
}

// Where storages come from: a zip record (new format) or the bytes after the pickles (legacy);
// called once per storage key.
using StorageLoader = std::function<torch::Tensor(const std::string& key, const StorageType& type, int64_t numel)>;

class Unpickler {
 public:
  /// `record` names the pickle in error messages ("archive/data.pkl").
  Unpickler(std::string_view data, StorageLoader load_storage, std::string record, const std::string& source)
      : d_(data), load_storage_(std::move(load_storage)), record_(std::move(record)), source_(source) {}

  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;
  // Containers may hold each other deeply or in cycles (the memo allows both): unlink every value
  // first, so that no destructor recurses and no cycle leaks.
  ~Unpickler() {
    for (const Py& v : made_) {
      v->items.clear();
      v->entries.clear();
    }
  }

  size_t position() const { return pos_; }  // bytes consumed so far (after run(): just past STOP)

  Py run() {
    while (true) {
      size_t at = pos_;
      uint8_t op = u8();
      switch (op) {
        case 0x80:
          u8();
          break;  // PROTO
        case 0x95:
          take(8);
          break;     // FRAME (protocol 4)
        case '.': {  // STOP
          FUNDUS_CHECK(stack_.size() == 1, where(at) << "STOP with " << stack_.size() << " values on the stack");
          return stack_.back();
        }
        case 'N':
          push(make(PyValue::Kind::None));
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE / NEWFALSE
          auto v = make(PyValue::Kind::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'J':
          push_int(static_cast<int32_t>(le(4)));
          break;  // BININT
        case 'K':
          push_int(static_cast<int64_t>(le(1)));
          break;  // BININT1
        case 'M':
          push_int(static_cast<int64_t>(le(2)));
          break;      // BININT2
        case 0x8a: {  // LONG1
          size_t n = u8();
          if (n > 8) {  // e.g. the legacy format's magic number: kept as its bytes
            auto big = make(PyValue::Kind::Other);
            big->s = "long:" + std::string(take(n));
            push(big);
            break;
          }
          uint64_t v = n ? le(n) : 0;
          if (n && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
          push_int(static_cast<int64_t>(v));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (char c : take(8)) bits = (bits << 8) | static_cast<uint8_t>(c);
          auto v = make(PyValue::Kind::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'X':
          push_str(take(le(4)));
          break;  // BINUNICODE
        case 0x8c:
          push_str(take(u8()));
          break;  // SHORT_BINUNICODE
        case 'T':
          push_str(take(le(4)));
          break;  // BINSTRING
        case 'U':
          push_str(take(u8()));
          break;  // SHORT_BINSTRING
        case '}':
          push(make(PyValue::Kind::Dict));
          break;
        case ']':
          push(make(PyValue::Kind::List));
          break;
        case ')':
          push(make(PyValue::Kind::Tuple));
          break;
        case '(':
          marks_.push_back(stack_.size());
          break;     // MARK
        case 't': {  // TUPLE
          auto v = make(PyValue::Kind::Tuple);
          v->items = pop_mark(at);
          push(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          size_t n = op - 0x84;
          FUNDUS_CHECK(stack_.size() >= n + (marks_.empty() ? 0 : marks_.back()), where(at) << "stack underflow");
          auto v = make(PyValue::Kind::Tuple);
          v->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          push(v);
          break;
        }
        case 'a': {  // APPEND
          Py item = pop(at);
          expect(top(at), PyValue::Kind::List, at)->items.push_back(item);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_mark(at);
          auto& list = expect(top(at), PyValue::Kind::List, at)->items;
          list.insert(list.end(), items.begin(), items.end());
          break;
        }
        case 's': {  // SETITEM
          Py value = pop(at), key = pop(at);
          set_item(top(at), key, value, at);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_mark(at);
          FUNDUS_CHECK(items.size() % 2 == 0, where(at) << "SETITEMS with an odd number of values");
          for (size_t k = 0; k < items.size(); k += 2) set_item(top(at), items[k], items[k + 1], at);
          break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
          auto v = make(PyValue::Kind::Global);
          std::string module = line(at);
          v->s = module + "." + line(at);
          push(v);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Py name = pop(at), module = pop(at);
          auto v = make(PyValue::Kind::Global);
          v->s = expect(module, PyValue::Kind::Str, at)->s + "." + expect(name, PyValue::Kind::Str, at)->s;
          push(v);
          break;
        }
        case 'R': {  // REDUCE
          Py args = pop(at), callable = pop(at);
          push(reduce(expect(callable, PyValue::Kind::Global, at)->s, expect(args, PyValue::Kind::Tuple, at)->items,
                      at));
          break;
        }
        case 'b':
          pop(at);
          top(at);
          break;  // BUILD: object state (e.g. _metadata) unused
        case 'Q':
          push(persistent_load(pop(at), at));
          break;  // BINPERSID
        case 'q':
          memo_[le(1)] = top(at);
          break;  // BINPUT
        case 'r':
          memo_[le(4)] = top(at);
          break;  // LONG_BINPUT
        case 0x94:
          memo_[memo_.size()] = top(at);
          break;  // MEMOIZE
        case 'h':
          push(memo_get(le(1), at));
          break;  // BINGET
        case 'j':
          push(memo_get(le(4), at));
          break;  // LONG_BINGET
        case '0':
          pop(at);
          break;  // POP
        case '2':
          push(top(at));
          break;  // DUP
        default:
          FUNDUS_THROW(where(at) << "unsupported pickle opcode 0x" << std::hex << static_cast<int>(op)
                                 << " (not written by torch.save of a state_dict)");
      }
    }
  }

 private:
  std::string where(size_t at) const { return source_ + ": " + record_ + " offset " + std::to_string(at) + ": "; }

  Py make(PyValue::Kind kind) {
    auto v = std::make_shared<PyValue>();
    v->kind = kind;
    made_.push_back(v);
    return v;
  }

  uint8_t u8() {
    FUNDUS_CHECK(pos_ < d_.size(), where(pos_) << "truncated pickle");
    return static_cast<uint8_t>(d_[pos_++]);
  }
  uint64_t le(size_t n) {
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(u8()) << (8 * k);
    return v;
  }
  std::string_view take(uint64_t n) {
    FUNDUS_CHECK(n <= d_.size() - pos_, where(pos_) << "truncated pickle");
    auto v = d_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  std::string line(size_t at) {
    size_t end = d_.find('\n', pos_);
    FUNDUS_CHECK(end != std::string_view::npos, where(at) << "truncated GLOBAL");
    std::string s(d_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }

  void push(Py v) { stack_.push_back(std::move(v)); }
  void push_int(int64_t i) {
    auto v = make(PyValue::Kind::Int);
    v->i = i;
    push(v);
  }
  void push_str(std::string_view s) {
    auto v = make(PyValue::Kind::Str);
    v->s = std::string(s);
    push(v);
  }
  Py pop(size_t at) {
    FUNDUS_CHECK(!stack_.empty() && (marks_.empty() || stack_.size() > marks_.back()), where(at) << "stack underflow");
    Py v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Py& top(size_t at) {
    FUNDUS_CHECK(!stack_.empty(), where(at) << "stack underflow");
    return stack_.back();
  }
  std::vector<Py> pop_mark(size_t at) {
    FUNDUS_CHECK(!marks_.empty(), where(at) << "no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    // Every pop respects the innermost MARK, so it is never above the stack; kept as a guard.
    FUNDUS_CHECK(m <= stack_.size(), where(at) << "stack underflow");
    std::vector<Py> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Py memo_get(uint64_t key, size_t at) {
    auto it = memo_.find(key);
    FUNDUS_CHECK(it != memo_.end(), where(at) << "memo key " << key << " not defined");
    return it->second;
  }
  Py expect(const Py& v, PyValue::Kind kind, size_t at) {
    FUNDUS_CHECK(v->kind == kind, where(at) << "expected " << kind_name(kind) << ", found " << kind_name(v->kind)
                                            << (v->s.empty() ? "" : " '" + v->s + "'"));
    return v;
  }
  void set_item(Py& dict, const Py& key, const Py& value, size_t at) {
    auto& entries = expect(dict, PyValue::Kind::Dict, at)->entries;
    for (auto& e : entries)
      if (e.first->kind == key->kind && e.first->s == key->s && e.first->i == key->i) {
        e.second = value;
        return;
      }
    entries.emplace_back(key, value);
  }

  int64_t as_int(const Py& v, size_t at) { return expect(v, PyValue::Kind::Int, at)->i; }
  std::vector<int64_t> as_ints(const Py& v, size_t at) {
    std::vector<int64_t> out;
    for (const auto& item : expect(v, PyValue::Kind::Tuple, at)->items) out.push_back(as_int(item, at));
    return out;
  }

  Py reduce(const std::string& callable, const std::vector<Py>& args, size_t at) {
    if (callable == "collections.OrderedDict") return make(PyValue::Kind::Dict);
    if (callable == "torch._utils._rebuild_tensor_v2" || callable == "torch._utils._rebuild_tensor") {
      FUNDUS_CHECK(args.size() >= 4, where(at) << callable << " with " << args.size() << " arguments");
      return rebuild_tensor(expect(args[0], PyValue::Kind::Storage, at)->tensor, as_int(args[1], at),
                            as_ints(args[2], at), as_ints(args[3], at), at);
    }
    if (callable == "torch._utils._rebuild_parameter" || callable == "torch._utils._rebuild_parameter_with_state") {
      FUNDUS_CHECK(!args.empty(), where(at) << callable << " without arguments");
      return expect(args[0], PyValue::Kind::Tensor, at);
    }
    // Anything else (numpy scalars, torch.Size, user classes in a checkpoint) is kept opaque: it can
    // only appear as a non-tensor leaf, which read_state_dict skips.
    auto v = make(PyValue::Kind::Other);
    v->s = callable;
    return v;
  }

  Py rebuild_tensor(const torch::Tensor& storage, int64_t offset, const std::vector<int64_t>& size,
                    const std::vector<int64_t>& stride, size_t at) {
    FUNDUS_CHECK(size.size() == stride.size(),
                 where(at) << "tensor with " << size.size() << " sizes and " << stride.size() << " strides");
    FUNDUS_CHECK(size.size() <= kMaxTensorDims,
                 where(at) << "tensor with " << size.size() << " dimensions (at most " << kMaxTensorDims << ")");
    FUNDUS_CHECK(offset >= 0 && offset <= storage.numel(), where(at) << "tensor offset " << offset
                                                                     << " outside its storage of " << storage.numel()
                                                                     << " elements");
    // Element count and last element in overflow-checked arithmetic: both must stay within the
    // storage, so a view never claims more elements than the file holds.
    int64_t last = offset, numel = 1;
    bool overflow = false;
    for (size_t k = 0; k < size.size(); ++k) {
      FUNDUS_CHECK(size[k] >= 0 && stride[k] >= 0, where(at) << "negative tensor size or stride");
      int64_t span = 0;
      overflow = overflow || __builtin_mul_overflow(numel, size[k], &numel);
      if (size[k] > 0)
        overflow = overflow || __builtin_mul_overflow(size[k] - 1, stride[k], &span) ||
                   __builtin_add_overflow(last, span, &last);
    }
    FUNDUS_CHECK(!overflow && numel <= storage.numel() && (numel == 0 || last < storage.numel()),
                 where(at) << "tensor view (sizes " << join_ints(size) << ", strides " << join_ints(stride)
                           << ", offset " << offset << ") outside its storage of " << storage.numel() << " elements");
    auto v = make(PyValue::Kind::Tensor);
    v->tensor = storage.as_strided(size, stride, offset);
    return v;
  }

  Py persistent_load(const Py& pid, size_t at) {
    // ('storage', type, key, location, numel) and, in the legacy format, a sixth item: None or
    // (view_key, offset, view_numel) for a storage that is a slice of another one. The location
    // (e.g. "cuda:0") is ignored: everything is loaded to the CPU.
    const auto& t = expect(pid, PyValue::Kind::Tuple, at)->items;
    FUNDUS_CHECK((t.size() == 5 || t.size() == 6) && t[0]->kind == PyValue::Kind::Str && t[0]->s == "storage",
                 where(at) << "unsupported persistent id (expected ('storage', type, key, location, numel))");
    const std::string& type_name = expect(t[1], PyValue::Kind::Global, at)->s;
    const std::string& key = expect(t[2], PyValue::Kind::Str, at)->s;
    int64_t numel = as_int(t[4], at);
    const StorageType* type = storage_type_by_name(type_name);
    FUNDUS_CHECK(type, source_ << ": unsupported tensor storage type '" << type_name
                               << "' (supported: float32/64, float16, bfloat16, int64/32/16, int8, uint8, bool)");
    Py storage;
    auto cached = storages_.find(key);
    if (cached != storages_.end()) {
      storage = cached->second;
    } else {
      storage = make(PyValue::Kind::Storage);
      storage->tensor = load_storage_(key, *type, numel);
      storages_[key] = storage;
    }
    if (t.size() == 6 && t[5]->kind != PyValue::Kind::None) {
      const auto& view = expect(t[5], PyValue::Kind::Tuple, at)->items;
      FUNDUS_CHECK(view.size() == 3, where(at) << "storage view metadata with " << view.size() << " items");
      int64_t offset = as_int(view[1], at), size = as_int(view[2], at);
      FUNDUS_CHECK(offset >= 0 && size >= 0 && offset + size <= storage->tensor.numel(),
                   where(at) << "storage view outside its storage");
      auto slice = make(PyValue::Kind::Storage);
      slice->tensor = storage->tensor.narrow(0, offset, size);
      return slice;
    }
    return storage;
  }

  std::string_view d_;
  StorageLoader load_storage_;
  std::string record_;
  const std::string& source_;
  size_t pos_ = 0;
  std::vector<Py> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Py> memo_;
  std::map<std::string, Py> storages_;
  std::vector<Py> made_;  // every value created, for the destructor
};

void flatten(const Py& dict, const std::string& prefix, StateDict& out, const std::string& source, int depth = 0) {
  FUNDUS_CHECK(depth < kMaxNesting, source << ": dicts nested deeper than " << kMaxNesting << " levels at '" << prefix
                                           << "' (a reference cycle?): not a state_dict");
  for (const auto& [key, value] : dict->entries) {
    std::string name = prefix + (key->kind == PyValue::Kind::Str ? key->s : std::to_string(key->i));
    if (value->kind == PyValue::Kind::Tensor) {
      FUNDUS_CHECK(!out.contains(name), source << ": tensor name '" << name << "' occurs twice after flattening");
      out.insert(name, value->tensor);
    } else if (value->kind == PyValue::Kind::Dict) {
      flatten(value, name + ".", out, source, depth + 1);
    }
  }
}

// ---- pickle writer ------------------------------------------------------------------------------

class Pickler {
 public:
  void op(char c) { out_.push_back(c); }
  void str(const std::string& s) {
    op('X');
    le(s.size(), 4);
    out_ += s;
  }
  void global(const std::string& module, const std::string& name) { out_ += "c" + module + "\n" + name + "\n"; }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      le(static_cast<uint64_t>(v), 1);
    } else if (v >= 0 && v < 65536) {
      op('M');
      le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      le(static_cast<uint64_t>(v), 4);
    } else {
      op('\x8a');
      le(8, 1);
      le(static_cast<uint64_t>(v), 8);
    }
  }
  void ints(c10::IntArrayRef values) {
    op('(');
    for (int64_t v : values) integer(v);
    op('t');
  }
  std::string take() { return std::move(out_); }

 private:
  void le(uint64_t v, size_t n) {
    for (size_t k = 0; k < n; ++k) out_.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  }
  std::string out_;
};

std::string shape_string(c10::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

std::string list_names(const std::vector<std::string>& names, size_t max = 12) {
  std::vector<std::string> head(names.begin(),
                                names.begin() + static_cast<std::ptrdiff_t>(std::min(max, names.size())));
  std::string s = join(head, ", ");
  if (names.size() > max) s += ", ... (" + std::to_string(names.size() - max) + " more)";
  return s;
}

bool has_prefix(const std::string& name, const std::vector<std::string>& prefixes) {
  for (const auto& p : prefixes)
    if (starts_with(name, p)) return true;
  return false;
}

}  // namespace

namespace {

// LibTorch's own checks surface as its message without the stack trace; an allocation failure as
// a plain error naming the file.
template <typename F>
auto guarded(const std::string& source, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    FUNDUS_THROW(source << ": " << e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    FUNDUS_THROW(source << ": out of memory while reading the weights");
  }
}

StateDict state_dict_of(const Py& root, const std::string& source) {
  FUNDUS_CHECK(root->kind == PyValue::Kind::Dict,
               source << ": not a state_dict: the saved object is a " << kind_name(root->kind)
                      << (root->s.empty() ? "" : " (" + root->s + ")") << ", expected a dict of tensors");
  StateDict out;
  flatten(root, "", out, source);
  return out;
}

// torch.save's zip format (PyTorch >= 1.6): <name>/data.pkl plus one record per storage.
StateDict parse_zip(const std::string& bytes, const std::string& source) {
  ZipReader zip(bytes, source);
  std::string prefix;
  for (const auto& name : zip.names()) {
    size_t slash = name.find('/');
    if (slash == std::string::npos) continue;
    std::string rest = name.substr(slash + 1);
    FUNDUS_CHECK(rest != "constants.pkl" && !starts_with(rest, "code/"),
                 source << ": TorchScript archive, not a state_dict (save the weights with "
                           "torch.save(model.state_dict(), path))");
    if (rest == "data.pkl") prefix = name.substr(0, slash + 1);
  }
  FUNDUS_CHECK(!prefix.empty(), source << ": zip archive without a <name>/data.pkl record: not written by torch.save");
  if (zip.contains(prefix + "byteorder")) {
    std::string order(zip.read(prefix + "byteorder"));
    FUNDUS_CHECK(order == "little",
                 source << ": tensors stored with byte order '" << order << "' (only little-endian is supported)");
  }
  StorageLoader load = [&](const std::string& key, const StorageType& type, int64_t numel) {
    std::string record = prefix + "data/" + key;
    FUNDUS_CHECK(zip.contains(record),
                 source << ": missing data record '" << record << "' (truncated or damaged file)");
    std::string_view data = zip.read(record);
    // The declared size against the bytes that are there, before allocating anything.
    FUNDUS_CHECK(uint64_t(numel) <= data.size() / type.element_size,
                 source << ": storage '" << key << "' declares " << numel << " elements of " << type.element_size
                        << " bytes, but its data record '" << record << "' holds " << data.size()
                        << " bytes (truncated or corrupt file)");
    torch::Tensor storage = torch::empty({numel}, torch::TensorOptions().dtype(type.dtype));
    const uint64_t need = uint64_t(numel) * type.element_size;
    if (need) std::memcpy(storage.data_ptr(), data.data(), need);
    return storage;
  };
  return guarded(source, [&] {
    return state_dict_of(Unpickler(zip.read(prefix + "data.pkl"), load, prefix + "data.pkl", source).run(), source);
  });
}

// The legacy format (PyTorch 0.1.10 - 1.5, and torch.save(..., _use_new_zipfile_serialization=False);
// older torchvision files such as densenet121-a639ec97.pth): five pickles back to back (magic
// number, protocol version 1001, system info, the object, the list of storage keys), then each
// storage as an int64 element count and its raw little-endian bytes, in the order of that list.
StateDict parse_legacy(const std::string& bytes, const std::string& source) {
  std::string_view rest(bytes);
  StorageLoader no_storage = [&](const std::string&, const StorageType&, int64_t) -> torch::Tensor {
    FUNDUS_THROW(source << ": a tensor outside the saved object (damaged legacy file)");
  };
  // An Unpickler owns the values it made (its destructor unlinks them): keep every one alive until
  // the state_dict is flattened.
  std::vector<std::unique_ptr<Unpickler>> unpicklers;
  auto next = [&](const StorageLoader& load, const char* what) {
    unpicklers.push_back(std::make_unique<Unpickler>(
        rest, load,
        std::string("legacy ") + what + " pickle at byte " + std::to_string(bytes.size() - rest.size()) + ",", source));
    Py v = unpicklers.back()->run();
    rest.remove_prefix(unpicklers.back()->position());
    return v;
  };
  static const std::string kMagic("long:\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 15);
  Py magic = next(no_storage, "magic-number");
  FUNDUS_CHECK(magic->kind == PyValue::Kind::Other && magic->s == kMagic,
               source << ": a pickle without torch.save's magic number: not a PyTorch weight file");
  Py protocol = next(no_storage, "protocol");
  FUNDUS_CHECK(protocol->kind == PyValue::Kind::Int && protocol->i == 1001,
               source << ": legacy torch.save protocol " << (protocol->kind == PyValue::Kind::Int ? protocol->i : -1)
                      << " (only 1001 exists)");
  Py info = next(no_storage, "system-info");
  if (info->kind == PyValue::Kind::Dict)
    for (const auto& [k, v] : info->entries)
      FUNDUS_CHECK(!(k->s == "little_endian" && v->kind == PyValue::Kind::Bool && !v->i),
                   source << ": saved on a big-endian machine (only little-endian is supported)");

  std::map<std::string, torch::Tensor> storages;
  StorageLoader remember = [&](const std::string& key, const StorageType& type, int64_t numel) {
    // The declared size against the bytes the file has left, before allocating anything.
    FUNDUS_CHECK(uint64_t(numel) <= rest.size() / type.element_size,
                 source << ": storage '" << key << "' declares " << numel << " elements of " << type.element_size
                        << " bytes, more than the file holds (truncated or corrupt file)");
    torch::Tensor storage = torch::empty({numel}, torch::TensorOptions().dtype(type.dtype));
    storages[key] = storage;
    return storage;
  };
  Py root = guarded(source, [&] { return next(remember, "object"); });
  Py keys = next(no_storage, "storage-keys");
  FUNDUS_CHECK(keys->kind == PyValue::Kind::List, source << ": legacy file without its list of storages (damaged?)");
  std::set<std::string> filled;
  for (const auto& key : keys->items) {
    FUNDUS_CHECK(key->kind == PyValue::Kind::Str && storages.count(key->s),
                 source << ": legacy file lists a storage the object does not use (damaged?)");
    torch::Tensor& storage = storages[key->s];
    FUNDUS_CHECK(rest.size() >= 8, source << ": storage '" << key->s << "' is missing (truncated file)");
    int64_t count = 0;
    std::memcpy(&count, rest.data(), 8);  // little-endian hosts only (checked above for the file)
    rest.remove_prefix(8);
    FUNDUS_CHECK(count == storage.numel(), source << ": storage '" << key->s << "' holds " << count
                                                  << " elements, the object expects " << storage.numel());
    uint64_t need = static_cast<uint64_t>(count) * storage.element_size();
    FUNDUS_CHECK(rest.size() >= need, source << ": storage '" << key->s << "' is cut short (truncated file)");
    if (need) std::memcpy(storage.data_ptr(), rest.data(), need);
    rest.remove_prefix(need);
    filled.insert(key->s);
  }
  FUNDUS_CHECK(filled.size() == storages.size(), source << ": " << storages.size() - filled.size()
                                                        << " storages without data (truncated or damaged file)");
  return guarded(source, [&] { return state_dict_of(root, source); });
}

}  // namespace

StateDict parse_state_dict(const std::string& bytes, const std::string& source) {
  FUNDUS_CHECK(!bytes.empty(), source << ": empty file (truncated?)");
  if (bytes.size() >= 4 && bytes.compare(0, 4, "PK\x03\x04") == 0) return parse_zip(bytes, source);
  if (static_cast<uint8_t>(bytes[0]) == 0x80) return parse_legacy(bytes, source);
  FUNDUS_CHECK(!(bytes.size() > 262 && bytes.compare(257, 5, "ustar") == 0),
               source << ": PyTorch's tar format (before 0.1.10, 2017): load and re-save it with Python's "
                         "torch.save(torch.load(path), path)");
  FUNDUS_THROW(source << ": not a PyTorch weight file (neither a torch.save zip archive nor a pickle)");
}

StateDict read_state_dict(const std::string& path) { return parse_state_dict(read_file(path), path); }

std::string serialize_state_dict(const StateDict& state) {
  Pickler p;
  p.op('\x80');
  p.op('\x02');
  p.op('}');
  p.op('(');
  std::vector<torch::Tensor> storages;
  for (const auto& item : state) {
    torch::Tensor t = item.value().detach().to(torch::kCPU).contiguous();
    const StorageType* type = storage_type_by_dtype(t.scalar_type());
    FUNDUS_CHECK(type, "cannot save tensor '" << item.key() << "': unsupported dtype " << t.scalar_type());
    std::string type_name(type->name);
    p.str(item.key());
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');
    p.op('(');
    p.str("storage");
    p.global("torch", type_name.substr(6));
    p.str(std::to_string(storages.size()));
    p.str("cpu");
    p.integer(t.numel());
    p.op('t');
    p.op('Q');     // BINPERSID
    p.integer(0);  // storage offset
    p.ints(t.sizes());
    p.ints(t.strides());
    p.op('\x89');  // requires_grad = False
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');  // backward_hooks = OrderedDict()
    p.op('t');
    p.op('R');
    storages.push_back(t);
  }
  p.op('u');
  p.op('.');
  ZipWriter zip;
  zip.add("archive/data.pkl", p.take());
  for (size_t k = 0; k < storages.size(); ++k) {
    const auto& t = storages[k];
    zip.add("archive/data/" + std::to_string(k),
            std::string_view(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()));
  }
  zip.add("archive/version", "3\n");
  return zip.finish();
}

void write_state_dict(const std::string& path, const StateDict& state) {
  write_file_atomic(path, serialize_state_dict(state));
}

StateDict module_state_dict(const torch::nn::Module& module) {
  // Per module, parameters then buffers: the order of PyTorch's Module.state_dict().
  // (include_self=false: the root may live on the stack, not in a shared_ptr.)
  StateDict out;
  auto add = [&out](const std::string& prefix, const torch::nn::Module& m) {
    for (const auto& p : m.named_parameters(false)) out.insert(prefix + p.key(), p.value().detach());
    for (const auto& b : m.named_buffers(false)) out.insert(prefix + b.key(), b.value().detach());
  };
  add("", module);
  for (const auto& m : module.named_modules("", false)) add(m.key() + ".", *m.value());
  return out;
}

std::string LoadReport::summary() const {
  std::ostringstream os;
  os << "loaded " << loaded.size() << " tensors";
  if (!allowed_missing.empty())
    os << "; " << allowed_missing.size() << " not in the file (allowed, kept as initialised)";
  if (!ignored.empty()) os << "; " << ignored.size() << " unused by design: " << list_names(ignored, 6);
  if (!missing.empty()) os << "; MISSING " << missing.size() << ": " << list_names(missing);
  if (!unexpected.empty()) os << "; UNEXPECTED " << unexpected.size() << ": " << list_names(unexpected);
  if (!mismatched.empty()) os << "; MIS-SHAPED " << mismatched.size() << ": " << list_names(mismatched);
  return os.str();
}

LoadReport load_into(torch::nn::Module& module, const StateDict& state, const LoadOptions& options) {
  StateDict target = module_state_dict(module);
  LoadReport report;
  std::set<std::string> seen;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (const auto& item : state) {
    const std::string& key = item.key();
    const torch::Tensor* dst = nullptr;
    std::string name;
    if (starts_with(key, options.strip_prefix)) {
      name = options.add_prefix + key.substr(options.strip_prefix.size());
      dst = target.find(name);
    }
    if (!dst) {
      (has_prefix(key, options.ignore_unexpected_prefixes) ? report.ignored : report.unexpected).push_back(key);
      continue;
    }
    seen.insert(name);
    if (dst->sizes() != item.value().sizes()) {
      report.mismatched.push_back(name + ": file " + shape_string(item.value().sizes()) + " vs module " +
                                  shape_string(dst->sizes()));
      continue;
    }
    report.loaded.push_back(name);
    copies.emplace_back(*dst, item.value());
  }
  for (const auto& item : target)
    if (!seen.count(item.key()))
      (has_prefix(item.key(), options.allow_missing_prefixes) ? report.allowed_missing : report.missing)
          .push_back(item.key());
  FUNDUS_CHECK(!options.strict || report.ok(), "state_dict does not match the model: " << report.summary());
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  return report;
}

}  // namespace fundus
