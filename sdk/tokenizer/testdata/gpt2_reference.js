// Writes gpt2_reference.json: GPT-2 token ids of test strings, computed by the
// reference JavaScript encoder of the npm package gpt-3-encoder@1.1.4 (a port
// of OpenAI's encoder.py). Run from this directory:
//
//   npm pack gpt-3-encoder@1.1.4 --ignore-scripts && tar xzf gpt-3-encoder-1.1.4.tgz
//   node gpt2_reference.js package > gpt2_reference.json
//
// The reference encoder knows no special tokens, so no string here contains
// <|endoftext|>; the Go tests check that case separately.
const { encode } = require(require('path').resolve(process.argv[2]));

const texts = [
  "Hello world",
  "Hello, world! How's it going?",
  "I'm sure you'll see they've done it, we'd say.",
  "  leading spaces",
  "trailing spaces   ",
  "a  b   c    d",
  "tabs\tand\nnewlines\n\n\nand \r\n crlf",
  "   \n   ",
  "numbers 1234567890 and 3.14159, 1,000,000",
  "emoji 😀👍🏽🇯🇵 family 👨‍👩‍👧‍👦",
  "naïve café résumé Zürich Ångström",
  "日本語のテキストと中文文本",
  "Здравствуй, мир! Γειά σου Κόσμε",
  "mixed: e\u0301 vs é, ﬁ ligature, \u00a0nbsp",
  "code: for (int i = 0; i < n; ++i) { x[i] = i*i; }",
  "<|endoftext",
  "punctuation!!! ??? ... --- ***",
  "",
];
const out = texts.map(text => ({ text, ids: encode(text) }));
process.stdout.write("[\n" + out.map(o => JSON.stringify(o)).join(",\n") + "\n]\n");
