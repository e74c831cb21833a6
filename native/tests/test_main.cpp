// Runner for the native tests: `sdn_tests [--list] [--json] [--filter SUBSTR]`.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "sdn/error.h"
#include "test.h"

namespace sdntest {

std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}

std::vector<float> random_vector(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed * 2654435761u + 12345u);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  if (n && lo < 0 && hi > 0) v[0] = hi * 0.75f;  // never all-zero
  return v;
}

template <typename R>
static bool close_impl(const float* got, const R* ref, size_t n, double atol, double rtol, std::string* why) {
  double worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < n; ++i) {
    double g = got[i], r = (double)ref[i];
    double err = std::fabs(g - r);
    double lim = atol + rtol * std::fabs(r);
    double score = std::isnan(g) != std::isnan(r) ? 1e30 : (std::isnan(g) ? 0 : err / lim);
    if (!(score <= worst)) {
      worst = score;
      wi = i;
    }
  }
  if (worst <= 1.0) return true;
  if (why) {
    std::ostringstream o;
    o << "at [" << wi << "] got " << got[wi] << " want " << (double)ref[wi] << " (|err|/tol = " << worst
      << ", n = " << n << ")";
    *why = o.str();
  }
  return false;
}

bool all_close(const float* got, const double* ref, size_t n, double atol, double rtol, std::string* why) {
  return close_impl(got, ref, n, atol, rtol, why);
}
bool all_close(const float* got, const float* ref, size_t n, double atol, double rtol, std::string* why) {
  return close_impl(got, ref, n, atol, rtol, why);
}

}  // namespace sdntest

static std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += c;
    else if (c == '\n') o += "\\n";
    else if ((unsigned char)c < 0x20) o += ' ';
    else o += c;
  }
  return o;
}

int main(int argc, char** argv) {
  bool list = false, json = false;
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--list")) list = true;
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
    else {
      std::fprintf(stderr, "usage: sdn_tests [--list] [--json] [--filter SUBSTR]\n");
      return 2;
    }
  }
  auto& reg = sdntest::registry();
  if (list) {
    for (auto& t : reg)
      if (filter.empty() || t.name.find(filter) != std::string::npos) std::cout << t.name << "\n";
    return 0;
  }
  int passed = 0, failed = 0;
  for (auto& t : reg) {
    if (!filter.empty() && t.name.find(filter) == std::string::npos) continue;
    auto t0 = std::chrono::steady_clock::now();
    std::string err;
    try {
      t.fn();
    } catch (const sdntest::Failure& f) {
      err = f.message;
    } catch (const sdn::Error& e) {
      err = std::string("unexpected sdn::Error ") + sdn::error_code_name(e.code()) + ": " + e.what();
    } catch (const std::exception& e) {
      err = std::string("unexpected exception: ") + e.what();
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (err.empty()) ++passed; else ++failed;
    if (json)
      std::cout << "{\"name\":\"" << json_escape(t.name) << "\",\"ok\":" << (err.empty() ? "true" : "false")
                << ",\"ms\":" << ms << ",\"error\":\"" << json_escape(err) << "\"}" << std::endl;
    else
      std::cout << (err.empty() ? "PASS " : "FAIL ") << t.name << " (" << (int)ms << " ms)"
                << (err.empty() ? "" : "\n  " + err) << std::endl;
  }
  if (!json) std::cout << passed << " passed, " << failed << " failed" << std::endl;
  return failed ? 1 : 0;
}
