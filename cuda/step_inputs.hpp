#pragma once
/// Checks a step plan against the backend's limits and converts it into the flat arrays the
/// kernels read (the one place where plan data is validated and converted for the device).

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "cuda/kernels.hpp"
#include "cuda/sampling.hpp"
#include "model/status.hpp"
#include "model/step_plan.hpp"

namespace kvserve::cuda {

struct step_limits {
  int vocab_size = 0;
  int num_kv_blocks = 0;
  int block_size = 0;
  int max_model_len = 0;
  int max_num_seqs = 0;
  int max_num_tokens = 0;                // tokens per step
  int max_rows = 0;                      // rows of a decode-shaped step (>= max_num_seqs)
  int small_step_max_tokens = 0;         // steps of at most this many tokens run decode-shaped
  int small_step_max_seq_tokens = 0;     // ... each sequence with at most this many tokens
  int small_step_max_context_reads = 0;  // ... and its rows reading this many context tokens
  int max_blocks_per_seq = 0;            // width of the block-table rows
  int max_logits_rows = 0;               // rows of the logits buffer
  int token_list_capacity = 0;           // ints of the sampling token lists
  int gqa_group = 1;                     // query heads per KV head
};

/// Where one plan sequence's outputs are found.
struct seq_outputs {
  int sample_row = -1;        // row of `sampled` (decode: the sequence's row)
  int first_logits_row = -1;  // first of `num_logits_rows` rows of the logits buffer
  int num_logits_rows = 0;    // rows the host reads back (kLast: 1, kAll/prompt logprobs: n)
};

/// The flat, device-ready form of a step. A decode-shaped step (`decode_only`) has one row per
/// token: a decode step's row i is sequence i, and a small step (at most
/// step_limits::small_step_max_tokens tokens, e.g. a short prompt or a chunk beside decodes)
/// gives each token of a sequence its own row with its own position, slot, context length
/// (position + 1) and a copy of its sequence's block table, so the split-KV decode attention
/// and the decode graphs run it; only each sampled sequence's last row samples with its own
/// parameters (the other rows sample greedily and are discarded). The rows are padded to
/// `num_rows` (a graph bucket) with rows that write nowhere. Other steps run the general path:
/// one block table per sequence and prefill work items.
struct step_inputs {
  bool decode_only = false;  // decode-shaped (decode attention, graphs)
  int num_seqs = 0;
  int num_rows = 0;                  // decode: padded batch; otherwise: num_tokens
  int num_tokens = 0;                // real tokens
  std::vector<std::int32_t> tokens;  // [num_rows]
  /// [num_rows]: >= 0: the row's token is the previous step's sampled[gather_src] (taken on
  /// the device; tokens[row] is then 0); -1: tokens[row].
  std::vector<std::int32_t> gather_src;
  std::vector<std::int32_t> positions;        // [num_rows]
  std::vector<std::int32_t> slot_mapping;     // [num_rows], -1 for padding
  std::vector<std::int32_t> context_lens;     // decode: [num_rows], 0 for padding
  std::vector<std::int32_t> block_tables;     // [num_seqs or num_rows, max_blocks_per_seq]
  std::vector<prefill_work_item> items;       // prefill/mixed only
  std::vector<std::int32_t> logits_rows;      // prefill/mixed: token index of each logits row
  std::vector<device_sampling_row> sampling;  // decode: [num_rows]; else one per sampled seq
  std::vector<std::int32_t> token_lists;
  std::vector<seq_outputs> outputs;  // [plan.seqs.size()]
};

/// True when `plan` runs decode-shaped: every sequence has one token, or the step has at most
/// limits.small_step_max_tokens tokens, no sequence more than limits.small_step_max_seq_tokens,
/// and the rows of its multi-token sequences read at most limits.small_step_max_context_reads
/// context tokens in all; in both cases at most limits.max_rows tokens and no sequence that
/// needs host logits rows other than its last (prompt logprobs, kAll over several tokens).
bool is_decode_shaped(const step_plan& plan, const step_limits& limits);

/// Where sequences with input_from_last_sample find their token: the previous submitted step's
/// sample rows by sequence id (sorted by id), and, for sequences whose sampling uses penalties
/// (their penalty lists need the token on the host), a function that waits for that step and
/// returns the token of a row.
struct last_sample_source {
  const std::vector<std::pair<seq_id, std::int32_t>>* rows = nullptr;
  std::function<result<std::int32_t>(std::int32_t row)> host_token;
};

/// Validates `plan` (as the CPU backend does: token ids, block ids, block-table coverage,
/// positions, sampling parameters) and fills `out`. `decode_rows(n, max_rows)` is the padded
/// row count of a decode-shaped step of n tokens. `prev`: null rejects input_from_last_sample.
/// kInvalidArgument on a bad plan.
[[nodiscard]] status build_step_inputs(const step_plan& plan, const step_limits& limits,
                                       int (*decode_rows)(int, int), const last_sample_source* prev,
                                       step_inputs& out);

}  // namespace kvserve::cuda
