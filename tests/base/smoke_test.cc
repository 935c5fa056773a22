#include <gtest/gtest.h>

#include "tinyseek/numerics/fp8.h"

TEST(Smoke, E4M3Max) { EXPECT_EQ(tinyseek::numerics::fp8_encode(448.0f, tinyseek::numerics::Fp8Format::E4M3), 0x7E); }
