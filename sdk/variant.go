package sdk

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/sedd-go/sedd/sdk/internal/config"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/modeldir"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
	"github.com/sedd-go/sedd/sdk/internal/ortcache"
)

// graphChoice is the graph an opened model runs: model.onnx or a variant.
type graphChoice struct {
	name      string // manifest.Reference or the variant's name
	precision string // "fp32" or "int8"
	onnx      manifest.ONNX
	tolerance float64 // Verify's default tolerance for it, 0 for the manifest's
	reason    string  // why it was chosen, in words
}

// reference is model.onnx itself.
func reference(man *manifest.Manifest, reason string) graphChoice {
	return graphChoice{name: manifest.Reference, precision: manifest.PrecisionFP32, onnx: man.ONNX, reason: reason}
}

func fromVariant(v manifest.Variant, reason string) graphChoice {
	return graphChoice{name: v.Name, precision: v.Precision, onnx: v.ONNX, tolerance: v.Tolerance, reason: reason}
}

// firstOf returns the first variant of the given precision.
func firstOf(man *manifest.Manifest, precision string) (manifest.Variant, bool) {
	for _, v := range man.Variants {
		if v.Precision == precision {
			return v, true
		}
	}
	return manifest.Variant{}, false
}

// choose picks the graph for the precision asked for (WithPrecision).
func choose(man *manifest.Manifest, want string) (graphChoice, error) {
	fp32 := func(why string) graphChoice {
		if v, ok := firstOf(man, manifest.PrecisionFP32); ok {
			return fromVariant(v, why+": the optimized float32 variant")
		}
		return reference(man, why+": model.onnx (the model has no optimized float32 variant)")
	}
	switch want {
	case config.PrecisionAuto, "":
		if v, ok := firstOf(man, manifest.PrecisionInt8); ok {
			if v.Quality != nil && v.Quality.WithinLimits {
				return fromVariant(v, "auto: the int8 variant, whose measured quality cost is within the limits ("+v.Quality.Summary+")"), nil
			}
			why := "its quality cost was not measured"
			if v.Quality != nil {
				why = "its measured quality cost is past the limits (" + v.Quality.Summary + ")"
			}
			return fp32("auto (int8 not chosen: " + why + ")"), nil
		}
		return fp32("auto"), nil
	case config.PrecisionFP32:
		return fp32("asked for fp32"), nil
	case config.PrecisionReference:
		return reference(man, "asked for the reference graph"), nil
	case config.PrecisionInt8:
		if v, ok := firstOf(man, manifest.PrecisionInt8); ok {
			return fromVariant(v, "asked for int8"), nil
		}
	default:
		if v, ok := man.Variant(want); ok {
			return fromVariant(v, "asked for the variant "+want), nil
		}
	}
	have := []string{manifest.Reference}
	for _, v := range man.Variants {
		have = append(have, v.Name+" ("+v.Precision+")")
	}
	return graphChoice{}, fmt.Errorf("%w: precision %q: this model has no such graph; it has %s (export/variants.py builds the fp32-opt and int8 variants of an exported directory)",
		ErrBadRequest, want, strings.Join(have, ", "))
}

// Graph cache states (Info.GraphCache).
const (
	cacheOff   = "off"
	cacheHit   = "hit"
	cacheBuilt = "built"
)

// openNetwork creates the session of the chosen graph, through the
// optimized-graph cache when it applies: a model directory on disk, a CPU
// session, a cache directory and a graph with a recorded sha256. It returns
// the cache state (and why the cache was not used, for "off").
func openNetwork(d modeldir.Dir, man *manifest.Manifest, ch graphChoice, o config.Open, log *slog.Logger) (*onnxrt.Session, string, error) {
	rt := o.Runtime()
	uncached := func(why string) (*onnxrt.Session, string, error) {
		src, err := network(d, ch.onnx)
		if err != nil {
			return nil, "", err
		}
		s, err := openReleasing(src, man.N(), rt...)
		return s, cacheOff + ": " + why, err
	}
	switch {
	case o.CacheDir == "":
		return uncached("no cache directory")
	case d.Path() == "":
		return uncached("the model is not a directory on disk")
	case o.CUDA:
		return uncached("CUDA sessions are not cached")
	case ch.onnx.SHA256 == "":
		return uncached("sedd.json records no sha256 for " + ch.onnx.File)
	}
	env, err := onnxrt.Acquire(o.LibraryPath)
	if err != nil {
		return nil, "", err
	}
	defer env.Release()
	cache := ortcache.Cache{Root: o.CacheDir}
	key := ortcache.Key{SourceSHA256: ch.onnx.SHA256, ORTVersion: env.Version(), Provider: "cpu"}
	graph, problem, err := cache.Lookup(key)
	if err != nil {
		log.Warn("optimized-graph cache unusable; loading the model without it", "dir", o.CacheDir, "error", err.Error())
		return uncached("cache error: " + err.Error())
	}
	if problem != "" {
		log.Warn("optimized-graph cache entry deleted and built again", "file", ch.onnx.File, "reason", problem)
	}
	source := filepath.Join(d.Path(), ch.onnx.File)
	if graph != "" && !cache.Trusted(key, source) {
		// The cached graph is a copy of what the manifest's sha256 names; the
		// source file must still be that (or Open would accept a broken model
		// directory). It is read again only when it changed since it was
		// last found to match.
		if _, err := d.HashFile(ch.onnx.File, ch.onnx.Size, ch.onnx.SHA256); err != nil {
			return nil, "", err
		}
		cache.Trust(key, source)
	}
	if graph != "" {
		// A private copy of the entry, so that no process truncating the
		// cached weights can reach this session's mapping of them (SIGBUS).
		pinned, unpin, err := cache.Pin(key, graph)
		if err != nil {
			// No room for the copy (the entry stays: a changed file is
			// found by the next Lookup).
			log.Warn("could not copy the optimized graph out of the cache; loading the model without it", "graph", graph, "error", err.Error())
			return uncached("cache error: " + err.Error())
		}
		s, err := onnxrt.OpenSource(onnxrt.Source{Path: pinned}, man.N(), append(slices.Clip(rt), onnxrt.WithPreoptimized())...)
		unpin()
		if err == nil {
			return s, cacheHit, nil
		}
		if hasKind(err) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, "", err // the library or the device, not the entry
		}
		log.Warn("ONNX Runtime refused a cached optimized graph; building it again", "graph", graph, "error", err.Error())
		if err := cache.Remove(key); err != nil {
			return uncached("cache error: " + err.Error())
		}
	}
	b, err := cache.Begin(key)
	if err != nil {
		log.Warn("optimized-graph cache unusable; loading the model without it", "dir", o.CacheDir, "error", err.Error())
		return uncached("cache error: " + err.Error())
	}
	src, err := network(d, ch.onnx)
	if err != nil {
		b.Abort()
		return nil, "", err
	}
	if !ch.onnx.ExternalData { // network hashed it
		b.Checked(source)
	}
	s, err := openReleasing(src, man.N(), append(slices.Clip(rt), onnxrt.WithSaveOptimized(b.GraphPath()))...)
	if err != nil {
		b.Abort()
		if errors.Is(err, ErrRuntimeUnavailable) || errors.Is(err, ErrCUDAUnavailable) {
			return nil, "", err
		}
		// ONNX Runtime fails the whole session when it cannot write the
		// optimized graph (a full or failing cache disk). Open the model
		// without the cache; a model that is itself broken fails here too,
		// with its own error.
		s, state, uerr := uncached("cache error: " + err.Error())
		if uerr != nil {
			return nil, "", uerr
		}
		log.Warn("could not write the optimized graph to the cache (full disk?); loaded the model without it",
			"dir", o.CacheDir, "error", err.Error())
		return s, state, nil
	}
	if _, err := b.Commit(); err != nil {
		log.Warn("could not keep the optimized graph in the cache", "dir", o.CacheDir, "error", err.Error())
		return s, cacheOff + ": " + err.Error(), nil
	}
	return s, cacheBuilt, nil
}

// openReleasing opens a session from src and, when src carried the file's
// bytes, returns their memory to the system at once: ONNX Runtime has copied
// them, and left to Go's background scavenger a sedd-small model.onnx (679
// MB) stayed resident for minutes next to the session's own copy.
func openReleasing(src onnxrt.Source, n int, opts ...onnxrt.Option) (*onnxrt.Session, error) {
	held := src.Data != nil
	s, err := onnxrt.OpenSource(src, n, opts...)
	if held {
		src = onnxrt.Source{}
		debug.FreeOSMemory()
	}
	return s, err
}
