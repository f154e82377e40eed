package api

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// RenderChat is the plain text a base model continues for a chat: each
// message as its role, capitalized, a colon, a space and its content,
// followed by a blank line; then "Assistant:", after which the answer is
// sampled. ChatStops end the answer where the model starts another turn.
//
//	System: You are terse.
//
//	User: Hi
//
//	Assistant:
func RenderChat(messages []Message) string {
	var b strings.Builder
	for _, m := range messages {
		b.WriteString(role(m.Role))
		b.WriteString(": ")
		b.WriteString(m.Content)
		b.WriteString("\n\n")
	}
	b.WriteString("Assistant:")
	return b.String()
}

// ChatStops are the stop strings of every chat: a new turn of the user or
// the system.
var ChatStops = []string{"\nUser:", "\nSystem:"}

// role capitalizes a role's first letter ("user" is "User").
func role(r string) string {
	if r == "" {
		return "User"
	}
	first, n := utf8.DecodeRuneInString(r)
	return string(unicode.ToUpper(first)) + r[n:]
}
