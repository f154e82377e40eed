package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:      "info",
		Usage:     "describe a model and the ONNX Runtime it runs on",
		ArgsUsage: "[DIR]",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "write one JSON object (the Info fields and the full sedd.json)"},
		}, modelFlags()...),
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 1 {
				return usagef("info takes at most one model directory, got %d arguments%s", c.Args().Len(), cmdline.FlagsAfterArgs(c))
			}
			opts, err := modelOptions(c)
			if err != nil {
				return err
			}
			m, err := openModel(c, c.Args().First(), opts)
			if err != nil {
				return err
			}
			defer m.Close()
			stdout, _ := streams(c)
			info := m.Info()
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
			row("model", "%s (%s)", info.Name, info.Dir)
			row("manifest", "format %d, %s", info.Format, info.Source)
			row("exported with", "%s", info.ExportedWith)
			row("parameters", "%s", thousands(info.Params))
			row("network", "DDiT, hidden %d, %d blocks, %d heads, cond %d, scale_by_sigma %t, time-independent %t",
				info.Hidden, info.Blocks, info.Heads, info.CondDim, info.ScaleBySigma, info.TimeIndependent)
			row("graph", "%s (%d states per position)", info.Graph, info.States)
			row("noise", "%s", info.Noise)
			row("length", "%d tokens", info.Length)
			row("vocabulary", "%d tokens, %s tokenizer%s", info.Tokens, info.Tokenizer, specials(info.SpecialTokens))
			row("onnx", "%s, %s bytes", info.ONNXFile, thousands(info.ONNXSize))
			row("precision", "%s, graph %s: %s", info.Precision, info.Variant, info.VariantReason)
			for _, v := range info.Variants {
				mark := " "
				if v.Running {
					mark = "*"
				}
				detail := fmt.Sprintf("%s, %s bytes", v.Precision, thousands(v.Size))
				if v.Name != "reference" {
					detail += fmt.Sprintf(", golden error %.2g, verify tolerance %g", v.MaxRelErr, v.Tolerance)
				}
				if v.Precision != "fp32" {
					q := "quality cost not measured"
					if v.Quality != "" {
						q = "quality: " + v.Quality
						if !v.WithinLimits {
							q += " (past the limits)"
						}
					}
					detail += ", " + q
				}
				row("  "+mark+" "+v.Name, "%s (%s)", v.File, detail)
			}
			row("graph cache", "%s", info.GraphCache)
			row("onnx runtime", "%s", info.ORTVersion)
			row("library", "%s", info.LibraryPath)
			row("found by", "%s: %s", info.LibrarySource, info.LibraryReason)
			provider := info.Provider
			if info.FellBackToCPU {
				provider += " (fell back to the CPU)"
			}
			row("provider", "%s, %d threads", provider, info.Threads)
			if len(info.RestoredSignals) > 0 {
				row("signals", "Go's handler given back on %s (a CUDA library replaced it)", strings.Join(info.RestoredSignals, ", "))
			}
			return tw.Flush()
		},
	}
}

func specials(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	names := make([]string, 0, len(m))
	for k, v := range m {
		names = append(names, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(names)
	return ", special " + strings.Join(names, " ")
}

// thousands writes n with thousands separators: 53,761.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
