#include "cuda/step_inputs.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include "cuda/cuda_check.hpp"
#include "model/sampler.hpp"

namespace kvserve::cuda {
namespace {

status invalid(const std::string& message) { return {status_code::kInvalidArgument, message}; }

// `placeholder`: tokens[0] is input_from_last_sample's placeholder (not checked).
status check_sequence(const sequence_step& s, const step_limits& l, bool placeholder) {
  const std::string id = "sequence " + std::to_string(s.id) + ": ";
  if (s.tokens.empty()) return invalid(id + "no tokens");
  if (s.start_position < 0) return invalid(id + "negative start position");
  const std::int64_t end = static_cast<std::int64_t>(s.start_position) + s.tokens.size();
  if (end > l.max_model_len)
    return invalid(id + "positions up to " + std::to_string(end) + " exceed max_model_len " +
                   std::to_string(l.max_model_len));
  for (std::size_t j = placeholder ? 1 : 0; j < s.tokens.size(); ++j)
    if (s.tokens[j] < 0 || s.tokens[j] >= l.vocab_size)
      return invalid(id + "token " + std::to_string(s.tokens[j]) + " outside the vocabulary");
  const std::int64_t blocks_needed = (end + l.block_size - 1) / l.block_size;
  if (static_cast<std::int64_t>(s.block_table.size()) < blocks_needed)
    return invalid(id + "block table has " + std::to_string(s.block_table.size()) +
                   " blocks, needs " + std::to_string(blocks_needed));
  for (std::int64_t b = 0; b < blocks_needed; ++b) {
    const std::int32_t blk = s.block_table[b];
    if (blk < 0 || blk >= l.num_kv_blocks)
      return invalid(id + "block id " + std::to_string(blk) + " outside the pool");
  }
  if (s.sample) {
    status st = validate_sampling_params(s.sampling);
    if (!st.is_ok()) return invalid(id + st.message());
  }
  return status::ok();
}

// `extra_output`: a token to count after penalty_output_tokens (input_from_last_sample), or -1.
device_sampling_row make_sampling_row(const sequence_step& s, int logits_row,
                                      std::vector<std::int32_t>& lists, std::int32_t extra_output) {
  device_sampling_row r;
  const auto& p = s.sampling;
  r.seed = p.seed;
  r.position =
      static_cast<std::int64_t>(s.start_position) + static_cast<std::int64_t>(s.tokens.size());
  r.logits_row = logits_row;
  r.temperature = p.temperature;
  r.top_k = p.top_k;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.repetition_penalty = p.repetition_penalty;
  r.presence_penalty = p.presence_penalty;
  r.frequency_penalty = p.frequency_penalty;
  auto append = [&](const std::vector<std::int32_t>& v, std::int32_t& begin, std::int32_t& count) {
    begin = static_cast<std::int32_t>(lists.size());
    count = static_cast<std::int32_t>(v.size());
    lists.insert(lists.end(), v.begin(), v.end());
  };
  if (p.uses_penalties()) {
    append(s.penalty_prompt_tokens, r.prompt_begin, r.prompt_count);
    append(s.penalty_output_tokens, r.output_begin, r.output_count);
    if (extra_output >= 0) {
      lists.push_back(extra_output);
      ++r.output_count;
    }
  }
  append(s.suppressed_tokens, r.suppressed_begin, r.suppressed_count);
  return r;
}

}  // namespace

bool is_decode_shaped(const step_plan& plan, const step_limits& l) {
  int num_tokens = 0, longest = 0;
  std::int64_t context_reads = 0;  // context tokens read by the rows of multi-token sequences
  bool all_single = true;
  for (const auto& s : plan.seqs) {
    const int n = static_cast<int>(s.tokens.size());
    num_tokens += n;
    longest = std::max(longest, n);
    if (n != 1) {
      all_single = false;
      context_reads += std::int64_t{n} * s.start_position + std::int64_t{n} * (n + 1) / 2;
    }
    if (s.prompt_logprobs >= 0) return false;
    if (n > 1 && s.return_logits == logits_mode::kAll) return false;
  }
  if (num_tokens > l.max_rows) return false;
  if (all_single) return true;
  return num_tokens <= l.small_step_max_tokens && longest <= l.small_step_max_seq_tokens &&
         context_reads <= l.small_step_max_context_reads;
}

status build_step_inputs(const step_plan& plan, const step_limits& l, int (*decode_rows)(int, int),
                         const last_sample_source* prev, step_inputs& out) {
  const int num_seqs = static_cast<int>(plan.seqs.size());
  out = step_inputs{};
  out.num_seqs = num_seqs;
  out.outputs.assign(num_seqs, {});
  if (num_seqs == 0) return status::ok();
  if (num_seqs > l.max_num_seqs)
    return invalid("step has " + std::to_string(num_seqs) + " sequences, max_num_seqs is " +
                   std::to_string(l.max_num_seqs));
  int num_tokens = 0;
  // input_from_last_sample: the previous step's sample row, or the token itself (penalties).
  std::vector<std::int32_t> from_row(num_seqs, -1), host_token(num_seqs, -1);
  for (int i = 0; i < num_seqs; ++i) {
    const auto& s = plan.seqs[i];
    KVSERVE_STATUS_TRY(check_sequence(s, l, s.input_from_last_sample));
    num_tokens += static_cast<int>(s.tokens.size());
    if (!s.input_from_last_sample) continue;
    const std::string id = "sequence " + std::to_string(s.id) + ": ";
    if (!prev || !prev->rows) return invalid(id + "input_from_last_sample is set");
    const auto it =
        std::lower_bound(prev->rows->begin(), prev->rows->end(),
                         std::make_pair(s.id, std::numeric_limits<std::int32_t>::min()));
    if (it == prev->rows->end() || it->first != s.id)
      return invalid(id + "input_from_last_sample, but the previous step sampled no token for it");
    if (s.sample && s.sampling.uses_penalties()) {
      auto t = prev->host_token(it->second);
      if (!t) return t.error();
      host_token[i] = *t;
    } else {
      from_row[i] = it->second;
    }
  }
  // Row r of sequence i, token j: its token (0 where it is gathered on the device).
  auto token_of = [&](int i, int j) -> std::int32_t {
    if (j == 0 && plan.seqs[i].input_from_last_sample)
      return host_token[i] >= 0 ? host_token[i] : 0;
    return plan.seqs[i].tokens[j];
  };
  if (num_tokens > l.max_num_tokens)
    return invalid("step has " + std::to_string(num_tokens) + " tokens, the backend takes " +
                   std::to_string(l.max_num_tokens));
  out.num_tokens = num_tokens;
  out.decode_only = is_decode_shaped(plan, l);
  const int width = l.max_blocks_per_seq;
  auto copy_table = [&](const sequence_step& s, std::int32_t* row) {
    const int n = std::min<int>(width, static_cast<int>(s.block_table.size()));
    std::copy(s.block_table.begin(), s.block_table.begin() + n, row);
  };
  auto slot_of = [&](const sequence_step& s, int pos) {
    return s.block_table[pos / l.block_size] * l.block_size + pos % l.block_size;
  };

  if (out.decode_only) {
    const int rows = decode_rows(num_tokens, l.max_rows);
    out.num_rows = rows;
    out.tokens.assign(rows, 0);
    out.gather_src.assign(rows, -1);
    out.positions.assign(rows, 0);
    out.slot_mapping.assign(rows, -1);
    out.context_lens.assign(rows, 0);
    out.block_tables.assign(static_cast<std::size_t>(rows) * width, 0);
    out.sampling.assign(rows, device_sampling_row{});
    for (int i = 0; i < rows; ++i) out.sampling[i].logits_row = i;
    int r = 0;
    for (int i = 0; i < num_seqs; ++i) {
      const auto& s = plan.seqs[i];
      const int n = static_cast<int>(s.tokens.size());
      if (from_row[i] >= 0) out.gather_src[r] = from_row[i];
      for (int j = 0; j < n; ++j, ++r) {
        const int pos = s.start_position + j;
        out.tokens[r] = token_of(i, j);
        out.positions[r] = pos;
        out.slot_mapping[r] = slot_of(s, pos);
        out.context_lens[r] = pos + 1;
        copy_table(s, out.block_tables.data() + static_cast<std::size_t>(r) * width);
      }
      const int last = r - 1;
      if (s.sample) {
        out.sampling[last] = make_sampling_row(s, last, out.token_lists, host_token[i]);
        out.outputs[i].sample_row = last;
      }
      const bool host_row =
          s.return_logits != logits_mode::kNone || (s.sample && s.sampling.logprobs >= 0);
      if (host_row) {
        out.outputs[i].first_logits_row = last;
        out.outputs[i].num_logits_rows = 1;
      }
    }
  } else {
    out.num_rows = num_tokens;
    out.block_tables.assign(static_cast<std::size_t>(num_seqs) * width, 0);
    std::vector<int> first(num_seqs);
    int t = 0;
    const int group = l.gqa_group;
    for (int i = 0; i < num_seqs; ++i) {
      const auto& s = plan.seqs[i];
      first[i] = t;
      copy_table(s, out.block_tables.data() + static_cast<std::size_t>(i) * width);
      const int n = static_cast<int>(s.tokens.size());
      for (int j = 0; j < n; ++j) {
        const int pos = s.start_position + j;
        out.tokens.push_back(token_of(i, j));
        out.gather_src.push_back(j == 0 ? from_row[i] : -1);
        out.positions.push_back(pos);
        out.slot_mapping.push_back(slot_of(s, pos));
      }
      if (group >= kPrefillRowsPerItem) {
        for (int j = 0; j < n; ++j)
          for (int h = 0; h < group; h += kPrefillRowsPerItem)
            out.items.push_back({i, t + j, 1, h, std::min(kPrefillRowsPerItem, group - h)});
      } else {
        const int per_item = kPrefillRowsPerItem / group;
        for (int j = 0; j < n; j += per_item)
          out.items.push_back({i, t + j, std::min(per_item, n - j), 0, group});
      }
      t += n;
    }
    // Logits rows: the sampled rows first (they must share the first chunk), then the rows
    // the host reads back.
    for (int i = 0; i < num_seqs; ++i) {
      const auto& s = plan.seqs[i];
      if (!s.sample) continue;
      const int row = static_cast<int>(out.logits_rows.size());
      out.logits_rows.push_back(first[i] + static_cast<int>(s.tokens.size()) - 1);
      out.outputs[i].sample_row = static_cast<int>(out.sampling.size());
      out.sampling.push_back(make_sampling_row(s, row, out.token_lists, host_token[i]));
      if (s.return_logits == logits_mode::kLast || s.sampling.logprobs >= 0) {
        if (s.prompt_logprobs < 0 && s.return_logits != logits_mode::kAll) {
          out.outputs[i].first_logits_row = row;
          out.outputs[i].num_logits_rows = 1;
        }
      }
    }
    for (int i = 0; i < num_seqs; ++i) {
      const auto& s = plan.seqs[i];
      const int n = static_cast<int>(s.tokens.size());
      const bool all = s.return_logits == logits_mode::kAll || s.prompt_logprobs >= 0;
      const bool last =
          s.return_logits == logits_mode::kLast || (s.sample && s.sampling.logprobs >= 0);
      if (all) {
        out.outputs[i].first_logits_row = static_cast<int>(out.logits_rows.size());
        out.outputs[i].num_logits_rows = n;
        for (int j = 0; j < n; ++j) out.logits_rows.push_back(first[i] + j);
      } else if (last && out.outputs[i].num_logits_rows == 0) {
        out.outputs[i].first_logits_row = static_cast<int>(out.logits_rows.size());
        out.outputs[i].num_logits_rows = 1;
        out.logits_rows.push_back(first[i] + n - 1);
      }
    }
  }
  if (static_cast<int>(out.token_lists.size()) > l.token_list_capacity)
    return invalid("penalty and suppressed token lists exceed the backend's capacity of " +
                   std::to_string(l.token_list_capacity));
  return status::ok();
}

}  // namespace kvserve::cuda
