// PyTorch .ckpt/.pt (zip) reader: a ZIP directory reader (stored entries, ZIP64) and a RESTRICTED pickle reader
// (ENGINE-FACTS Appendix B). Nothing in the pickle is executed: the reader interprets a fixed set of opcodes as
// data, recognises the torch tensor-rebuild functions and storage types by name, and turns every other global or
// call into an opaque placeholder value. Tensors point into the memory-mapped archive (entries are stored, not
// compressed).
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "formats/readers.h"
#include "sdn/error.h"

namespace sdn {

namespace {

uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | p[1] << 8); }
uint32_t rd32(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
uint64_t rd64(const uint8_t* p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

struct ZipEntry {
  uint64_t offset = 0;  // of the data
  uint64_t size = 0;
};

std::map<std::string, ZipEntry> read_zip(const uint8_t* d, size_t n, const std::string& what) {
  auto bad = [&](const std::string& m) { throw_error(ErrorCode::InvalidFile, what + ": " + m); };
  if (n < 22) bad("truncated zip archive");
  // End of central directory: the last 22..65557 bytes.
  size_t eocd = SIZE_MAX;
  size_t lo = n > 22 + 65535 ? n - 22 - 65535 : 0;
  for (size_t i = n - 22 + 1; i-- > lo;)
    if (rd32(d + i) == 0x06054b50u) {
      eocd = i;
      break;
    }
  if (eocd == SIZE_MAX) bad("zip end-of-directory record not found (truncated or not a zip file)");
  uint64_t count = rd16(d + eocd + 10);
  uint64_t cd_size = rd32(d + eocd + 12);
  uint64_t cd_off = rd32(d + eocd + 16);
  if (eocd >= 20 && rd32(d + eocd - 20) == 0x07064b50u) {  // ZIP64 locator
    uint64_t z64 = rd64(d + eocd - 20 + 8);
    if (z64 > n || n - z64 < 56 || rd32(d + z64) != 0x06064b50u) bad("bad ZIP64 end-of-directory record");
    count = rd64(d + z64 + 32);
    cd_size = rd64(d + z64 + 40);
    cd_off = rd64(d + z64 + 48);
  }
  if (cd_off > n || cd_size > n - cd_off) bad("zip central directory lies outside the file");
  if (count > cd_size / 46) bad("zip entry count does not fit the central directory");
  std::map<std::string, ZipEntry> out;
  uint64_t p = cd_off, end = cd_off + cd_size;
  for (uint64_t k = 0; k < count; ++k) {
    if (end - p < 46 || rd32(d + p) != 0x02014b50u) bad("corrupt zip central directory");
    const uint8_t* e = d + p;
    uint16_t method = rd16(e + 10);
    uint64_t csize = rd32(e + 20), usize = rd32(e + 24);
    uint16_t nlen = rd16(e + 28), xlen = rd16(e + 30), clen = rd16(e + 32);
    uint64_t lho = rd32(e + 42);
    if (end - p - 46 < (uint64_t)nlen + xlen + clen) bad("corrupt zip central directory entry");
    std::string name(reinterpret_cast<const char*>(e + 46), nlen);
    // ZIP64 extra field: the 0xFFFFFFFF fields, in order usize, csize, offset.
    const uint8_t* x = e + 46 + nlen;
    for (uint32_t xo = 0; xo + 4 <= xlen;) {
      uint16_t id = rd16(x + xo), len = rd16(x + xo + 2);
      if (xo + 4 + (uint32_t)len > xlen) break;
      if (id == 1) {
        uint32_t q = xo + 4, qe = xo + 4 + len;
        if (usize == 0xffffffffu && q + 8 <= qe) usize = rd64(x + q), q += 8;
        if (csize == 0xffffffffu && q + 8 <= qe) csize = rd64(x + q), q += 8;
        if (lho == 0xffffffffu && q + 8 <= qe) lho = rd64(x + q), q += 8;
      }
      xo += 4 + len;
    }
    p += 46 + (uint64_t)nlen + xlen + clen;
    if (lho > n || n - lho < 30 || rd32(d + lho) != 0x04034b50u) bad("zip entry " + name + ": bad local header");
    uint64_t data = lho + 30 + (uint64_t)rd16(d + lho + 26) + rd16(d + lho + 28);
    if (data > n || csize > n - data) bad("zip entry " + name + ": data runs past the end of the file (truncated)");
    if (method != 0) {
      // only remember it; using a compressed entry is an error reported where it is needed
      out[name] = ZipEntry{UINT64_MAX, csize};
      continue;
    }
    if (csize != usize) bad("zip entry " + name + ": stored entry with differing sizes");
    out[name] = ZipEntry{data, usize};
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Restricted pickle machine
// ---------------------------------------------------------------------------------------------------------
struct Obj {
  enum Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor, Opaque, Mark } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s;                 // Str, Global ("module.name"), Storage dtype name
  std::vector<Obj*> items;       // Tuple/List; Dict as key,value pairs
  // Storage
  std::string key;
  // Tensor
  Obj* storage = nullptr;
  int64_t offset = 0;
  std::vector<int64_t> shape, stride;
};

class Unpickler {
 public:
  // Memory budget of the parse: 32 MiB plus 8 bytes per pickle byte (real SD checkpoints use a few MB; a 2 MB
  // pickle of None opcodes used to take 478-862 MB).
  Unpickler(const uint8_t* d, size_t n, const std::string& what)
      : d_(d), n_(n), what_(what), budget_((size_t(32) << 20) + 8 * n) {
    mark_.kind = Obj::Mark;
  }

  Obj* run() {
    for (;;) {
      if (pos_ >= n_) fail("pickle ended without STOP");
      uint8_t op = d_[pos_++];
      switch (op) {
        case 0x80: need(1), pos_ += 1; break;                     // PROTO
        case 0x95: need(8), pos_ += 8; break;                     // FRAME
        case '}': push(make(Obj::Dict)); break;                   // EMPTY_DICT
        case ']': push(make(Obj::List)); break;                   // EMPTY_LIST
        case ')': push(make(Obj::Tuple)); break;                  // EMPTY_TUPLE
        case '(': push(&mark_); break;                            // MARK
        case 'N': push(make(Obj::None)); break;
        case 0x88: case 0x89: {                                   // NEWTRUE / NEWFALSE
          Obj* o = make(Obj::Bool);
          o->i = op == 0x88;
          push(o);
          break;
        }
        case 'J': { need(4); Obj* o = make(Obj::Int); o->i = (int32_t)rd32(d_ + pos_); pos_ += 4; push(o); break; }
        case 'K': { need(1); Obj* o = make(Obj::Int); o->i = d_[pos_]; pos_ += 1; push(o); break; }
        case 'M': { need(2); Obj* o = make(Obj::Int); o->i = rd16(d_ + pos_); pos_ += 2; push(o); break; }
        case 0x8a: {                                              // LONG1
          need(1);
          uint8_t len = d_[pos_++];
          need(len);
          int64_t v = 0;
          if (len > 8) fail("integer wider than 64 bits");
          for (int k = 0; k < len; ++k) v |= (int64_t)((uint64_t)d_[pos_ + (size_t)k] << (8 * k));
          if (len > 0 && len < 8 && (d_[pos_ + len - 1] & 0x80)) v -= (int64_t)((uint64_t)1 << (8 * len));
          pos_ += len;
          Obj* o = make(Obj::Int);
          o->i = v;
          push(o);
          break;
        }
        case 'G': {                                               // BINFLOAT (big-endian double)
          need(8);
          uint64_t b = 0;
          for (int k = 0; k < 8; ++k) b = b << 8 | d_[pos_ + (size_t)k];
          pos_ += 8;
          Obj* o = make(Obj::Float);
          std::memcpy(&o->f, &b, 8);
          push(o);
          break;
        }
        case 'X': { need(4); uint64_t l = rd32(d_ + pos_); pos_ += 4; push(str(l)); break; }    // BINUNICODE
        case 0x8c: { need(1); uint64_t l = d_[pos_++]; push(str(l)); break; }                  // SHORT_BINUNICODE
        case 0x8d: { need(8); uint64_t l = rd64(d_ + pos_); pos_ += 8; push(str(l)); break; }  // BINUNICODE8
        case 'B': { need(4); uint64_t l = rd32(d_ + pos_); pos_ += 4; push(str(l)); break; }    // BINBYTES
        case 'C': { need(1); uint64_t l = d_[pos_++]; push(str(l)); break; }                   // SHORT_BINBYTES
        case 't': { auto v = pop_mark(); charge(8 * v.size()); Obj* o = make(Obj::Tuple); o->items = std::move(v); push(o); break; }
        case 'l': { auto v = pop_mark(); charge(8 * v.size()); Obj* o = make(Obj::List); o->items = std::move(v); push(o); break; }
        case 'd': {
          auto v = pop_mark();
          charge(8 * v.size());
          if (v.size() % 2) fail("DICT with an odd number of items");
          Obj* o = make(Obj::Dict);
          o->items = std::move(v);
          push(o);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                        // TUPLE1..3
          size_t k = (size_t)(op - 0x84);
          if (stack_.size() < k) fail("stack underflow");
          Obj* o = make(Obj::Tuple);
          charge(8 * k);
          o->items.assign(stack_.end() - (long)k, stack_.end());
          for (Obj* it : o->items)
            if (it == &mark_) fail("MARK inside a tuple");
          stack_.resize(stack_.size() - k);
          push(o);
          break;
        }
        case 'c': {                                               // GLOBAL "module\nname\n"
          std::string mod = line(), name = line();
          Obj* o = make(Obj::Global);
          o->s = mod + "." + name;
          push(o);
          break;
        }
        case 0x93: {                                              // STACK_GLOBAL
          Obj* name = pop();
          Obj* mod = pop();
          if (name->kind != Obj::Str || mod->kind != Obj::Str) fail("STACK_GLOBAL needs two strings");
          Obj* o = make(Obj::Global);
          charge(mod->s.size() + name->s.size() + 1);
          o->s = mod->s + "." + name->s;
          push(o);
          break;
        }
        case 'Q': push(persistent(pop())); break;                 // BINPERSID
        case 'R': case 0x81: {                                    // REDUCE / NEWOBJ
          Obj* args = pop();
          Obj* fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': pop(); break;                                   // BUILD: state ignored (never calls __setstate__)
        case 'q': { need(1); memo_put(d_[pos_++]); break; }       // BINPUT
        case 'r': { need(4); uint32_t k = rd32(d_ + pos_); pos_ += 4; memo_put(k); break; }  // LONG_BINPUT
        case 0x94: memo_put((uint32_t)memo_.size()); break;       // MEMOIZE
        case 'h': { need(1); push(memo_get(d_[pos_++])); break; } // BINGET
        case 'j': { need(4); uint32_t k = rd32(d_ + pos_); pos_ += 4; push(memo_get(k)); break; }
        case 's': {                                               // SETITEM
          Obj* v = pop();
          Obj* k = pop();
          Obj* dct = top();
          charge(16);
          if (dct->kind == Obj::Dict) dct->items.push_back(k), dct->items.push_back(v);
          break;
        }
        case 'u': {                                               // SETITEMS
          auto v = pop_mark();
          if (v.size() % 2) fail("SETITEMS with an odd number of items");
          charge(8 * v.size());
          Obj* dct = top();
          if (dct->kind == Obj::Dict) dct->items.insert(dct->items.end(), v.begin(), v.end());
          break;
        }
        case 'a': {                                               // APPEND
          Obj* v = pop();
          Obj* l = top();
          charge(8);
          if (l->kind == Obj::List) l->items.push_back(v);
          break;
        }
        case 'e': {                                               // APPENDS
          auto v = pop_mark();
          charge(8 * v.size());
          Obj* l = top();
          if (l->kind == Obj::List) l->items.insert(l->items.end(), v.begin(), v.end());
          break;
        }
        case '0': pop(); break;                                   // POP
        case '1': pop_mark(); break;                              // POP_MARK
        case '2': push(top()); break;                             // DUP
        case '.': {                                               // STOP
          Obj* r = pop();
          return r;
        }
        default: {
          char b[8];
          std::snprintf(b, sizeof b, "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + b);
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& m) const {
    throw_error(ErrorCode::InvalidFile, what_ + ": data.pkl at byte " + std::to_string(pos_) + ": " + m);
  }
  void need(uint64_t k) const {
    if (k > n_ - pos_) fail("truncated pickle");
  }
  // Counts bytes the parse keeps; past the budget the file is refused (memory stays proportional to its size).
  void charge(size_t bytes) {
    used_ += bytes;
    if (used_ > budget_)
      fail("the pickle needs more than " + std::to_string(budget_ >> 20) +
           " MiB to read, far more than any real checkpoint (hostile or corrupt file)");
  }
  Obj* make(Obj::Kind k) {
    if (arena_.size() >= kMaxObjects) fail("too many pickle objects");
    charge(sizeof(Obj) + 32);  // the object, its arena slot and the allocator's overhead
    arena_.emplace_back(new Obj());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  void push(Obj* o) {
    if (stack_.size() >= kMaxObjects) fail("pickle stack too deep");
    if (stack_.size() == stack_high_) charge(8), stack_high_++;
    stack_.push_back(o);
  }
  Obj* pop() {
    if (stack_.empty()) fail("stack underflow");
    Obj* o = stack_.back();
    stack_.pop_back();
    if (o == &mark_) fail("unexpected MARK");
    return o;
  }
  Obj* top() {
    if (stack_.empty() || stack_.back() == &mark_) fail("stack underflow");
    return stack_.back();
  }
  std::vector<Obj*> pop_mark() {
    size_t k = stack_.size();
    while (k > 0 && stack_[k - 1] != &mark_) --k;
    if (k == 0) fail("no MARK on the stack");
    std::vector<Obj*> v(stack_.begin() + (long)k, stack_.end());
    stack_.resize(k - 1);
    return v;
  }
  Obj* str(uint64_t len) {
    need(len);
    Obj* o = make(Obj::Str);
    charge((size_t)len);
    o->s.assign(reinterpret_cast<const char*>(d_ + pos_), (size_t)len);
    pos_ += (size_t)len;
    return o;
  }
  std::string line() {
    size_t e = pos_;
    while (e < n_ && d_[e] != '\n' && e - pos_ < 256) ++e;
    if (e >= n_ || d_[e] != '\n') fail("bad GLOBAL name");
    std::string s(reinterpret_cast<const char*>(d_ + pos_), e - pos_);
    pos_ = e + 1;
    return s;
  }
  void memo_put(uint32_t k) {
    if (k >= kMaxObjects) fail("memo index too large");
    if (memo_.size() <= k) {
      charge(8 * ((size_t)k + 1 - memo_.size()));
      memo_.resize((size_t)k + 1, nullptr);
    }
    memo_[k] = top();
  }
  Obj* memo_get(uint32_t k) {
    if (k >= memo_.size() || !memo_[k]) fail("memo index " + std::to_string(k) + " was never stored");
    return memo_[k];
  }
  static bool int_tuple(const Obj* o, std::vector<int64_t>* out) {
    if (o->kind != Obj::Tuple && o->kind != Obj::List) return false;
    out->clear();
    for (const Obj* it : o->items) {
      if (it->kind != Obj::Int) return false;
      out->push_back(it->i);
    }
    return true;
  }
  // ('storage', <GLOBAL torch.XStorage>, key, location, numel)
  Obj* persistent(Obj* pid) {
    if (pid->kind == Obj::Tuple && pid->items.size() >= 3 && pid->items[0]->kind == Obj::Str &&
        pid->items[0]->s == "storage" && pid->items[1]->kind == Obj::Global && pid->items[2]->kind == Obj::Str) {
      Obj* o = make(Obj::Storage);
      charge(pid->items[1]->s.size() + pid->items[2]->s.size());
      o->s = pid->items[1]->s;
      o->key = pid->items[2]->s;
      return o;
    }
    return make(Obj::Opaque);
  }
  Obj* reduce(Obj* fn, Obj* args) {
    if (fn->kind != Obj::Global) return make(Obj::Opaque);
    const std::string& g = fn->s;
    if (g == "torch._utils._rebuild_tensor_v2" || g == "torch._utils._rebuild_tensor") {
      if (args->kind != Obj::Tuple || args->items.size() < 4) fail("bad arguments to " + g);
      Obj* t = make(Obj::Tensor);
      charge(16 * (args->items[2]->items.size() + args->items[3]->items.size()));
      t->storage = args->items[0];
      if (t->storage->kind != Obj::Storage || args->items[1]->kind != Obj::Int ||
          !int_tuple(args->items[2], &t->shape) || !int_tuple(args->items[3], &t->stride))
        fail("bad arguments to " + g);
      t->offset = args->items[1]->i;
      return t;
    }
    if (g == "torch._utils._rebuild_parameter" || g == "torch._utils._rebuild_parameter_with_state") {
      if (args->kind == Obj::Tuple && !args->items.empty()) return args->items[0];
      return make(Obj::Opaque);
    }
    if (g == "collections.OrderedDict" || g == "builtins.dict") return make(Obj::Dict);
    return make(Obj::Opaque);  // anything else: never called, just a placeholder
  }

  static constexpr size_t kMaxObjects = 2u << 20;  // ~200 bytes each; real SD checkpoints need ~30k
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& what_;
  size_t budget_, used_ = 0, stack_high_ = 0;
  Obj mark_;
  std::vector<Obj*> stack_;
  std::vector<Obj*> memo_;
  std::vector<std::unique_ptr<Obj>> arena_;
};

struct StorageType {
  const char* name;
  int size;
  DType dtype;  // Invalid = skipped
  Conv conv;
};
const StorageType kStorages[] = {
    {"torch.FloatStorage", 4, DType::F32, Conv::None},     {"torch.HalfStorage", 2, DType::F16, Conv::None},
    {"torch.BFloat16Storage", 2, DType::BF16, Conv::None}, {"torch.DoubleStorage", 8, DType::F32, Conv::F64toF32},
    {"torch.LongStorage", 8, DType::I32, Conv::I64toI32},  {"torch.IntStorage", 4, DType::I32, Conv::None},
    {"torch.ShortStorage", 2, DType::I16, Conv::None},     {"torch.CharStorage", 1, DType::I8, Conv::None},
    {"torch.ByteStorage", 1, DType::Invalid, Conv::None},  {"torch.BoolStorage", 1, DType::Invalid, Conv::None},
};

}  // namespace

RawModel parse_ckpt(const uint8_t* d, size_t n, const std::string& what, const std::shared_ptr<MappedFile>& map) {
  auto bad = [&](const std::string& m) { throw_error(ErrorCode::InvalidFile, what + ": " + m); };
  if (n >= 2 && d[0] == 0x80)
    throw_error(ErrorCode::Unsupported, what + ": legacy (pre-PyTorch 1.6, non-zip) checkpoint format is not supported; "
                                               "convert it to .safetensors");
  auto zip = read_zip(d, n, what);
  std::string prefix;
  bool found = false;
  for (auto& kv : zip) {
    const std::string& name = kv.first;
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "data.pkl") == 0 &&
        std::count(name.begin(), name.end(), '/') <= 1) {
      prefix = name.substr(0, name.size() - 8);
      found = true;
      break;
    }
  }
  if (!found) bad("no data.pkl in the archive (not a PyTorch checkpoint)");
  auto bo = zip.find(prefix + "byteorder");
  if (bo != zip.end() && bo->second.offset != UINT64_MAX && bo->second.size >= 3 &&
      std::memcmp(d + bo->second.offset, "big", 3) == 0)
    throw_error(ErrorCode::Unsupported, what + ": big-endian checkpoint");
  const ZipEntry& pkl = zip[prefix + "data.pkl"];
  if (pkl.offset == UINT64_MAX) bad("data.pkl is compressed (only stored entries are supported)");
  Unpickler up(d + pkl.offset, (size_t)pkl.size, what);
  Obj* root = up.run();
  if (root->kind != Obj::Dict) bad("the checkpoint's top-level object is not a dictionary");
  for (size_t k = 0; k + 1 < root->items.size(); k += 2)
    if (root->items[k]->kind == Obj::Str && root->items[k]->s == "state_dict" && root->items[k + 1]->kind == Obj::Dict) {
      root = root->items[k + 1];
      break;
    }
  RawModel m;
  m.format = "ckpt";
  std::set<std::string> seen;
  for (size_t k = 0; k + 1 < root->items.size(); k += 2) {
    Obj* key = root->items[k];
    Obj* val = root->items[k + 1];
    if (key->kind != Obj::Str || val->kind != Obj::Tensor) continue;  // non-tensor entries (ints, opaque objects)
    const std::string& name = key->s;
    std::string tn = "tensor \"" + name.substr(0, 200) + "\"";
    if (!seen.insert(name).second) bad("duplicate " + tn);
    const StorageType* st = nullptr;
    for (const StorageType& s : kStorages)
      if (val->storage->s == s.name) st = &s;
    if (!st) bad(tn + ": unsupported storage type " + val->storage->s.substr(0, 64));
    if (val->shape.size() > 4) bad(tn + ": " + std::to_string(val->shape.size()) + " dimensions (at most 4 are supported)");
    if (val->shape.size() != val->stride.size()) bad(tn + ": size and stride differ in length");
    int64_t numel;
    if (!checked_numel(val->shape, &numel)) bad(tn + ": shape " + shape_string(val->shape) + " overflows");
    int64_t expect = 1;
    for (size_t i = val->shape.size(); i-- > 0;) {
      if (val->shape[i] != 1 && val->stride[i] != expect)
        bad(tn + ": non-contiguous tensor (stride " + shape_string(val->stride) + ") is not supported");
      if (__builtin_mul_overflow(expect, val->shape[i], &expect)) bad(tn + ": shape overflows");
    }
    if (st->dtype == DType::Invalid) {
      m.skipped.push_back(name);
      continue;
    }
    auto ent = zip.find(prefix + "data/" + val->storage->key);
    if (ent == zip.end()) bad(tn + ": storage data/" + val->storage->key.substr(0, 64) + " is missing from the archive");
    if (ent->second.offset == UINT64_MAX) bad(tn + ": storage is compressed (only stored entries are supported)");
    uint64_t begin, bytes, end;
    if (val->offset < 0 || __builtin_mul_overflow((uint64_t)val->offset, (uint64_t)st->size, &begin) ||
        __builtin_mul_overflow((uint64_t)numel, (uint64_t)st->size, &bytes) || __builtin_add_overflow(begin, bytes, &end) ||
        end > ent->second.size)
      bad(tn + ": data runs past the end of its storage");
    RawTensor t;
    t.name = name;
    t.dtype = st->dtype;
    t.conv = st->conv;
    t.shape = val->shape;
    t.offset = (size_t)(ent->second.offset + begin);
    t.data = d + t.offset;
    t.nbytes = (size_t)bytes;
    t.map = map;
    m.tensors.push_back(std::move(t));
  }
  return m;
}

}  // namespace sdn
