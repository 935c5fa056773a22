// Unicode general-category ranges used by the pre-tokenizer (generated; see
// gen_unicode_tables.py). Sorted, disjoint, inclusive ranges.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tinyseek::data::unicode_tables {

struct CodeRange {
  uint32_t lo, hi;
};

extern const char* const unicode_version;
extern const CodeRange letter_ranges[];  // \p{L}: Lu Ll Lt Lm Lo
extern const size_t letter_ranges_count;
extern const CodeRange number_ranges[];  // \p{N}: Nd Nl No
extern const size_t number_ranges_count;

}  // namespace tinyseek::data::unicode_tables
