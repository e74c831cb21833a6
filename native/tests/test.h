// Minimal test harness for the native engine tests. Each TEST registers itself; the runner (test_main.cpp)
// runs all of them or those matching --filter, and prints one line per test plus a closing summary.
// jest (test/native.test.ts) drives the binary: `sdn_tests --list`, then `sdn_tests --json`.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace sdntest {

struct TestCase {
  std::string name;
  std::function<void()> fn;
};
std::vector<TestCase>& registry();
struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

struct Failure {
  std::string message;
};

// Fills with uniform values in [lo, hi) from a fixed seed (never all zero).
std::vector<float> random_vector(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f);

// Max |a-b| / (atol + rtol*|ref|) style comparison; returns a description of the worst element when it fails.
bool all_close(const float* got, const double* ref, size_t n, double atol, double rtol, std::string* why);
bool all_close(const float* got, const float* ref, size_t n, double atol, double rtol, std::string* why);

}  // namespace sdntest

#define SDN_TEST_CONCAT2(a, b) a##b
#define SDN_TEST_CONCAT(a, b) SDN_TEST_CONCAT2(a, b)
// TEST(group, name): tests are named "group.name"; jest shows each as its own test.
#define TEST(group, name)                                                                              \
  static void SDN_TEST_CONCAT(test_fn_, SDN_TEST_CONCAT(group, SDN_TEST_CONCAT(_, name)))();            \
  static ::sdntest::Registrar SDN_TEST_CONCAT(test_reg_, SDN_TEST_CONCAT(group, SDN_TEST_CONCAT(_, name)))( \
      #group "." #name, SDN_TEST_CONCAT(test_fn_, SDN_TEST_CONCAT(group, SDN_TEST_CONCAT(_, name))));      \
  static void SDN_TEST_CONCAT(test_fn_, SDN_TEST_CONCAT(group, SDN_TEST_CONCAT(_, name)))()

#define SDN_FAIL(msg)                                                                 \
  do {                                                                                \
    std::ostringstream sdn_os_;                                                        \
    sdn_os_ << __FILE__ << ":" << __LINE__ << ": " << msg;                           \
    throw ::sdntest::Failure{sdn_os_.str()};                                          \
  } while (0)

#define EXPECT_TRUE(cond) \
  do {                    \
    if (!(cond)) SDN_FAIL("expected " #cond); \
  } while (0)

#define EXPECT_EQ(a, b)                                                                 \
  do {                                                                                  \
    auto sdn_a_ = (a);                                                                  \
    auto sdn_b_ = (b);                                                                  \
    if (!(sdn_a_ == sdn_b_)) SDN_FAIL(#a " == " #b " failed: " << sdn_a_ << " vs " << sdn_b_); \
  } while (0)

#define EXPECT_NEAR(a, b, tol)                                                                        \
  do {                                                                                                \
    double sdn_a_ = (double)(a), sdn_b_ = (double)(b);                                                \
    if (!(std::fabs(sdn_a_ - sdn_b_) <= (tol)))                                                       \
      SDN_FAIL(#a " ~ " #b " failed: " << sdn_a_ << " vs " << sdn_b_ << " (tol " << (tol) << ")");    \
  } while (0)

// Checks that `stmt` throws sdn::Error with the given code.
#define EXPECT_THROWS_CODE(stmt, error_code)                                                       \
  do {                                                                                             \
    bool sdn_thrown_ = false;                                                                      \
    try {                                                                                          \
      stmt;                                                                                        \
    } catch (const ::sdn::Error& e) {                                                              \
      sdn_thrown_ = true;                                                                          \
      if (e.code() != (error_code))                                                                \
        SDN_FAIL(#stmt " threw " << ::sdn::error_code_name(e.code()) << " (" << e.what() << ")");  \
    }                                                                                              \
    if (!sdn_thrown_) SDN_FAIL(#stmt " did not throw");                                            \
  } while (0)

#define EXPECT_CLOSE(got, ref, n, atol, rtol)                              \
  do {                                                                     \
    std::string sdn_why_;                                                  \
    if (!::sdntest::all_close((got), (ref), (n), (atol), (rtol), &sdn_why_)) \
      SDN_FAIL("values differ: " << sdn_why_);                             \
  } while (0)
