package sdk

import "strings"

// SplitDocuments splits a text into documents at separator lines: lines whose
// whole content is separator (the "\r" of a CRLF line end does not count as
// content). It reads a corpus file the way the training pipeline writes one,
// documents with a line holding only <|endoftext|> between them: each
// document is the text between two separator lines (or the start or end of
// the text) with every line break at either of its ends removed, so blank
// lines around a separator are dropped too. Documents left empty (a separator
// on the first or last line, or two in a row) are left out. A text without
// separator lines is one document; an empty separator matches no line. The
// result is ready for EvaluateRequest.Documents: Evaluate appends the
// end-of-text token (Info.EOS) to each document.
func SplitDocuments(text, separator string) []string {
	var docs []string
	add := func(doc string) {
		if doc = strings.Trim(doc, "\r\n"); doc != "" {
			docs = append(docs, doc)
		}
	}
	start := 0 // where the current document began
	for line := 0; line < len(text); {
		end := strings.IndexByte(text[line:], '\n')
		next := len(text)
		if end >= 0 {
			end += line
			next = end + 1
		} else {
			end = len(text)
		}
		if separator != "" && strings.TrimSuffix(text[line:end], "\r") == separator {
			add(text[start:line])
			start = next
		}
		line = next
	}
	add(text[start:])
	return docs
}
