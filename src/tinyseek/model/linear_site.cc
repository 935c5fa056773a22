#include "tinyseek/model/linear_site.h"

#include "tinyseek/base/check.h"

namespace tinyseek::model {

LinearSite::LinearSite(const Registry& r, int weight_id) : weight(weight_id) {
  const TensorInfo& t = r.info(weight_id);
  TS_ASSERT(t.shape.size() == 2);
  out = t.shape[0];
  in = t.shape[1];
}

void LinearSite::forward(const Registry& r, float* y, const float* x, int64_t n, bool accumulate) const {
  ops::linear_forward(y, x, r.param(weight), n, in, out, accumulate, precision);
}

void LinearSite::backward(Registry& r, float* dx, const float* dy, const float* x, int64_t n) const {
  ops::linear_backward(dx, r.grad(weight), dy, x, r.param(weight), n, in, out, precision);
}

}  // namespace tinyseek::model
