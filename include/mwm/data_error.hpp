// Errors in the data (an id out of range, a NaN where NaN is an error) as a value: a code and the
// numbers its message needs. The CPU path and the CUDA kernels find the same errors with the
// same MWM_HOST_DEVICE checks, record the first one into a data_error_slot (the CPU in plain
// memory, the kernels in device memory with atomics, cuda/device_errors.cuh) and raise it
// through the one formatter below, so both paths raise the same words for the same input.
//
// "First" is the smallest key: (phase, flat index) packed by data_error_key, the order in
// which the CPU validators scan their inputs; a kernel's threads may find errors in any order
// and still record the one the CPU raises.
#pragma once

#include <cstdint>
#include <string>

#include "config.hpp"
#include "error.hpp"
#include "finite.hpp"

namespace mwm {

enum class data_error_code : std::uint32_t {
  none = 0,
  keep_id,           // ids_keep[sample, slot] = value outside [-1, bound)
  restore_id,        // ids_restore[sample, token] = value outside [0, bound)
  num_visible,       // num_visible[sample] = value outside [0, bound]
  region,            // regions[...] = value outside [0, bound) (bound = number of region ratios)
  non_finite,        // argument[index] = real, NaN or infinity under nan_policy::error
  prompt_weight,     // prompt_weights[index] = real, not finite
  loss_target,       // the loss reads a non-finite target in patch index (width = N)
  loss_weight,       // weight of patch index = real, not finite where mask is True
  loss_pred,         // the loss reads a non-finite prediction in patch index
  loss_overflow,     // the loss of patch index overflows its accumulation type (bound = its bits)
  keep_padding,      // ids_keep[sample, slot] = value follows -1 padding (packing needs it last)
  packed_offset,     // cu_seqlens[index] = value: a sample of fewer than 0 or more than bound rows
  packed_total,      // cu_seqlens[index] = value: must be bound (0 first, packed.shape[0] last)
  loss_sum_overflow  // every patch loss is finite, their reduced sum overflows (bound = bits)
};

// The argument a non_finite error names.
enum class data_argument : std::uint32_t { heatmaps, heatmap, scores };

MWM_HOST_DEVICE MWM_INLINE const char* data_argument_name(data_argument argument) {
  switch (argument) {
    case data_argument::heatmaps:
      return "heatmaps";
    case data_argument::heatmap:
      return "heatmap";
    default:
      return "scores";
  }
}

// The argument called `name` ("heatmaps", "heatmap" or "scores").
inline data_argument data_argument_named(const std::string& name) {
  if (name == "heatmaps") return data_argument::heatmaps;
  if (name == "heatmap") return data_argument::heatmap;
  return data_argument::scores;
}

// A recorded error. `index` is flat over the argument; rows of `width` elements give the
// (sample, position) the message names (width 0: the argument has no rows).
struct data_error {
  data_error_code code = data_error_code::none;
  data_argument argument = data_argument::scores;
  std::int64_t index = 0;
  std::int64_t width = 0;
  std::int64_t bound = 0;
  std::int64_t value = 0;  // the integer value of the id/region errors
  double real = 0.0;       // the value of the non-finite errors (NaN and infinities kept)
};

namespace steps {

// Keys order the errors of one call; phases order the checks the CPU runs one after another
// (ids_restore before num_visible, scores before regions). Flat indices stay below 2^62.
MWM_HOST_DEVICE MWM_INLINE std::uint64_t data_error_key(int phase, std::int64_t index) {
  return (static_cast<std::uint64_t>(phase) << 62) |
         (static_cast<std::uint64_t>(index) & ((std::uint64_t(1) << 62) - 1));
}

}  // namespace steps

// Where the first error of a call (or of a run of calls on the device) is kept. All zeros is
// "no error", so clearing it is a memset. The kernels' atomics need the unsigned long long
// fields; the CPU path uses the same struct serially.
struct data_error_slot {
  unsigned long long owner = 0;         // the launch that recorded (device), 0 = none
  unsigned long long inverted_key = 0;  // ~key of `error`: the largest wins, 0 = none
  unsigned int lock = 0;                // taken while a thread writes `error` (device)
  unsigned int unused = 0;
  data_error error;
};

namespace steps {

MWM_HOST_DEVICE MWM_INLINE bool has_data_error(const data_error_slot& slot) {
  return slot.inverted_key != 0;
}

}  // namespace steps

// ---- the errors, built where they are found ------------------------------------------------

namespace steps {

MWM_HOST_DEVICE MWM_INLINE data_error integer_data_error(data_error_code code, std::int64_t index,
                                                         std::int64_t width, std::int64_t value,
                                                         std::int64_t bound) {
  data_error e;
  e.code = code;
  e.index = index;
  e.width = width;
  e.value = value;
  e.bound = bound;
  return e;
}

MWM_HOST_DEVICE MWM_INLINE data_error real_data_error(data_error_code code, data_argument argument,
                                                      std::int64_t index, std::int64_t width,
                                                      double real) {
  data_error e;
  e.code = code;
  e.argument = argument;
  e.index = index;
  e.width = width;
  e.real = real;
  return e;
}

// True when values[index] is finite; else *bad is the non_finite error naming `argument`.
MWM_HOST_DEVICE MWM_INLINE bool finite_or_error(float value, data_argument argument,
                                                std::int64_t index, data_error* bad) {
  if (detail::is_finite_value(value)) return true;
  *bad = real_data_error(data_error_code::non_finite, argument, index, 0, value);
  return false;
}

// A region id of a per-region policy: in [0, num_regions).
MWM_HOST_DEVICE MWM_INLINE bool region_in_range(std::int32_t region, std::int64_t index,
                                                int num_regions, data_error* bad) {
  if (region >= 0 && region < num_regions) return true;
  *bad = integer_data_error(data_error_code::region, index, 0, region, num_regions);
  return false;
}

}  // namespace steps

// ---- the CPU side --------------------------------------------------------------------------

// Keeps `e` when its key is smaller than the recorded one (one thread at a time).
inline void record_data_error(data_error_slot& slot, std::uint64_t key, const data_error& e) {
  const auto inverted = static_cast<unsigned long long>(~key);
  if (inverted <= slot.inverted_key) return;
  slot.owner = 1;
  slot.inverted_key = inverted;
  slot.error = e;
}

namespace detail {

inline std::string row_place(const data_error& e, const char* position) {
  const std::int64_t width = e.width > 0 ? e.width : 1;
  return "sample " + to_text(e.index / width) + ", " + position + " " + to_text(e.index % width);
}

constexpr const char* loss_propagate_hint =
    "; nonfinite = \"propagate\" returns the non-finite loss instead";

}  // namespace detail

// The message of `e`: the words the CPU path has always raised for it.
inline std::string data_error_message(const data_error& e) {
  using detail::to_text;
  const std::string value = to_text(e.value);
  switch (e.code) {
    case data_error_code::keep_id:
      return "mwm: ids_keep = " + value + ": must lie in [-1, " + to_text(e.bound) + ") (" +
             detail::row_place(e, "slot") + "; -1 marks padding)";
    case data_error_code::restore_id:
      return "mwm: ids_restore = " + value + ": must lie in [0, " + to_text(e.bound) + ") (" +
             detail::row_place(e, "token") + ")";
    case data_error_code::num_visible:
      return "mwm: num_visible = " + value + ": must lie in [0, " + to_text(e.bound) +
             "] (sample " + to_text(e.index) + "; K = x_vis.shape[1])";
    case data_error_code::region:
      return "mwm: regions = " + value + ": must lie in [0, " + to_text(e.bound) +
             ") (one ratio per region)";
    case data_error_code::non_finite:
      return std::string("mwm: ") + data_argument_name(e.argument) + "[" + to_text(e.index) +
             "] = " + to_text(static_cast<float>(e.real)) +
             ": NaN or infinity (pass nan_policy=zero to treat it as zero)";
    case data_error_code::prompt_weight:
      return "mwm: prompt_weights = " + to_text(static_cast<float>(e.real)) + ": must be finite";
    case data_error_code::loss_target:
      return "mwm: target has a non-finite value (NaN or Inf) in " + detail::row_place(e, "patch") +
             ", which the loss reads (a masked patch)";
    case data_error_code::loss_weight:
      return "mwm: weight of " + detail::row_place(e, "patch") + " = " + to_text(e.real) +
             ": must be finite where mask is True" + detail::loss_propagate_hint;
    case data_error_code::loss_pred:
      return "mwm: pred has a non-finite value (NaN or Inf) in " + detail::row_place(e, "patch") +
             ", which the loss reads (a masked patch)" + detail::loss_propagate_hint;
    case data_error_code::loss_overflow:
      return "mwm: the loss of " + detail::row_place(e, "patch") + " overflows float" +
             to_text(e.bound) +
             " (pred, target and weight are finite there: |pred - target| is too large)" +
             detail::loss_propagate_hint;
    case data_error_code::keep_padding:
      return "mwm: ids_keep = " + value + ": follows padding (" + detail::row_place(e, "slot") +
             "): packing needs the -1 padding at the end of each row";
    case data_error_code::packed_offset:
      return "mwm: cu_seqlens[" + to_text(e.index) + "] = " + value +
             ": gives a sample fewer than 0 or more than N = " + to_text(e.bound) + " rows";
    case data_error_code::packed_total:
      return "mwm: cu_seqlens[" + to_text(e.index) + "] = " + value + ": must be " +
             to_text(e.bound) + " (0 first, packed.shape[0] or the total below 2^31 last)";
    case data_error_code::loss_sum_overflow:
      return "mwm: the reduced loss overflows float" + to_text(e.bound) +
             " (every patch's loss is finite, their sum is not)" + detail::loss_propagate_hint;
    default:
      return "mwm: data error code " + to_text(static_cast<std::uint32_t>(e.code));
  }
}

[[noreturn]] inline void raise_data_error(const data_error& e) {
  throw error(data_error_message(e));
}

// Throws mwm::error with the recorded error's message, if there is one.
inline void raise_if_data_error(const data_error_slot& slot) {
  if (steps::has_data_error(slot)) raise_data_error(slot.error);
}

}  // namespace mwm
