// mwm: text-guided patch masks for masked image modeling. The umbrella header; standard
// library only.
#pragma once

#include "batch.hpp"
#include "block.hpp"
#include "budget.hpp"
#include "config.hpp"
#include "error.hpp"
#include "finite.hpp"
#include "generate.hpp"
#include "grid.hpp"
#include "heatmap.hpp"
#include "keys.hpp"
#include "loss.hpp"
#include "outputs.hpp"
#include "parallel.hpp"
#include "philox.hpp"
#include "policy.hpp"
#include "regions.hpp"
#include "selection.hpp"
#include "tokens.hpp"
