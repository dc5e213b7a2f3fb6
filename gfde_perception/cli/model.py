# Copyright 2026 The gfde_perception Authors
# SPDX-License-Identifier: Apache-2.0
"""
``gfde-model``: inspect model bundles and the model registry.

* ``gfde-model info [BUNDLE]``: validate a bundle (default: the embedded model) and print its
  architecture, shapes, parameters per part, MACs per segment and exit, exits and thresholds,
  preprocessing, labels, provenance and metrics.
* ``gfde-model list``: the registry's variants with their size and cost.
* ``gfde-model export-onnx BUNDLE DIR``: write the deployable segments and exit heads (and the
  whole model) as ONNX files.

``--json`` prints the same information as one JSON document. Errors are reported on stderr with
exit status 2.
"""

import argparse
import json
from pathlib import Path
import sys

from gfde_perception.bundle import load_bundle
from gfde_perception.errors import BackendError, GfdeError
from gfde_perception.models import build_model, export_onnx, list_models, model_summary
from gfde_perception.models.gfnet_c import GFNetCConfig
from gfde_perception.models.registry import build_from_config
import torch


def _fmt_int(n: int) -> str:
    for unit, scale in (('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if n >= scale:
            return f'{n / scale:.2f}{unit}'
    return str(n)


def segment_shapes(model) -> list:
    """Return per segment: input shape, output features shape and pooled width (no batch)."""
    config = model.config
    bounds = (0,) + tuple(config.blocks_per_exit)
    param = next(model.parameters())
    x = torch.zeros(1, config.in_chans, config.img_size, config.img_size, device=param.device)
    out = []
    with torch.no_grad():
        for k, segment in enumerate(model.segments):
            shape_in = list(x.shape[1:])
            x, pooled = segment(x)
            out.append({'segment': k, 'blocks': [bounds[k], bounds[k + 1]], 'input': shape_in,
                        'features': list(x.shape[1:]), 'pooled': [int(pooled.shape[-1])]})
    return out


def bundle_info(bundle) -> dict:
    """Collect everything ``gfde-model info`` shows, JSON-ready."""
    with torch.device('meta'):  # shapes and counts only; the weights were validated on load
        model = build_from_config(bundle.config).eval()
    summary = model_summary(model)
    return {
        'name': bundle.name,
        'checksum': bundle.checksum,
        'model': bundle.config.to_dict(),
        'blocks_per_exit': list(bundle.config.blocks_per_exit),
        'segments': segment_shapes(model),
        'summary': summary,
        'gate': bundle.gate.to_dict(),
        'preprocessing': bundle.preprocessing.to_dict(),
        'labels': list(bundle.labels),
        'provenance': dict(bundle.provenance),
        'metrics': dict(bundle.metrics),
        'tensors': len(bundle.state_dict),
    }


def _describe(config: dict) -> str:
    """One line of architecture: family (backbone kind) and every field, compactly."""
    def fields(d):
        return ' '.join(f"{k}={'x'.join(map(str, v)) if isinstance(v, list) else v}"
                        for k, v in d.items() if k not in ('family', 'kind', 'backbone'))
    line = config.get('family', 'gfde')
    if 'backbone' in config:
        bb = config['backbone']
        line += f" ({bb.get('kind', 'gfnet')}) {fields(bb)} {fields(config)}"
    else:
        line += f' {fields(config)}'
    return line


def _print_info(info: dict, out) -> None:
    s = info['summary']
    print(f"bundle    {info['name']}  (sha256 {info['checksum'][:16]}..., "
          f"{info['tensors']} tensors)", file=out)
    print(f"model     {_describe(info['model'])}", file=out)
    print(f"params    total {_fmt_int(s['params_total'])} ({s['params_total']}), backbone "
          f"{_fmt_int(s['params_backbone'])}", file=out)
    thresholds = list(info['gate']['thresholds']) + [None]
    print('exits     k  blocks  segment in -> features     seg params  seg MACs  head params'
          '  head MACs  MACs to exit  threshold', file=out)
    for seg, head, thr, p, m, cum in zip(info['segments'], s['exit_heads'], thresholds,
                                         s['params_per_segment'], s['macs_per_segment'],
                                         s['macs_to_exit']):
        shapes = f"{'x'.join(map(str, seg['input']))} -> {'x'.join(map(str, seg['features']))}"
        print(f"          {seg['segment']}  {head['blocks']:6d}  {shapes:22s}  {_fmt_int(p):>10s}"
              f"  {_fmt_int(m):>8s}  {head['params']:11d}  {head['head_macs']:9d}"
              f"  {_fmt_int(cum):>12s}  {'final' if thr is None else f'{thr:.4g}'}", file=out)
    gate = info['gate']
    extra = f", learned weights {gate['learned_weights']}" if gate['learned_weights'] else ''
    print(f"gate      {gate['metric']}{extra}", file=out)
    pre = info['preprocessing']
    print(f"input     {pre['input_size'][0]}x{pre['input_size'][1]} {pre['channel_order']} "
          f"mean {pre['mean']} std {pre['std']} {pre['interpolation']} {pre['resize_mode']}",
          file=out)
    labels = info['labels']
    shown = ', '.join(labels[:12]) + (f', ... ({len(labels)} in all)' if len(labels) > 12 else '')
    print(f'labels    {shown}', file=out)
    for title in ('provenance', 'metrics'):
        print(title, file=out)
        _print_tree(info[title], out, '  ')
        if not info[title]:
            print('  (none)', file=out)


def _print_tree(data: dict, out, indent: str, depth: int = 0, width: int = 99) -> None:
    """Print nested dicts as an indented outline; long leaves are shortened with '...'."""
    for key in sorted(data):
        value = data[key]
        if isinstance(value, dict) and value and depth < 2:
            print(f'{indent}{key}:', file=out)
            _print_tree(value, out, indent + '  ', depth + 1, width)
            continue
        text = json.dumps(value, sort_keys=True)
        line = f'{indent}{key}: {text}'
        print(line if len(line) <= width else line[:width - 3] + '...', file=out)


def registry_table() -> list:
    """Return one row per registry entry: name, family, input, params and MACs per exit."""
    rows = []
    for name in list_models():
        try:
            with torch.device('meta'):
                model = build_model(name, **({'pretrained': False}
                                             if name == 'efficientnet-lite0' else {}))
        except BackendError as exc:  # an optional package (the pretrained CNN) is missing
            rows.append({'name': name, 'family': 'unavailable', 'reason': str(exc)})
            continue
        s = model_summary(model)
        c = model.config
        family = c.family
        if family == 'gfde':
            family = 'gfnet-c' if isinstance(c.backbone, GFNetCConfig) else (
                'gfnet-h' if c.backbone.hierarchical else 'gfnet')
        rows.append({'name': name, 'family': family,
                     'input': [c.in_chans, c.img_size, c.img_size],
                     'num_classes': c.num_classes, 'blocks_per_exit': list(c.blocks_per_exit),
                     'params': s['params_total'], 'macs_to_exit': s['macs_to_exit']})
    return rows


def _cmd_info(args) -> int:
    info = bundle_info(load_bundle(args.bundle))
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
    else:
        _print_info(info, sys.stdout)
    return 0


def _cmd_list(args) -> int:
    rows = registry_table()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'name':18s} {'family':18s} {'input':10s} {'classes':>7s} {'params':>8s} "
          f"{'MACs (final)':>12s}  exits at blocks")
    for r in rows:
        if r['family'] == 'unavailable':
            print(f"{r['name']:18s} unavailable: {r['reason']}")
            continue
        shape = 'x'.join(map(str, r['input']))
        print(f"{r['name']:18s} {r['family']:18s} {shape:10s} {r['num_classes']:7d} "
              f"{_fmt_int(r['params']):>8s} {_fmt_int(r['macs_to_exit'][-1]):>12s}  "
              f"{r['blocks_per_exit']}")
    return 0


def _cmd_export(args) -> int:
    bundle = load_bundle(args.bundle)
    model = bundle.build_model(deployable=True)
    out = Path(args.directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg = bundle.config
    x = torch.zeros(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    written = [export_onnx(model, out / 'model.onnx', x)]
    feed = x
    with torch.no_grad():
        for k, (segment, head) in enumerate(zip(model.segments, model.exit_heads)):
            written.append(export_onnx(segment, out / f'segment_{k}.onnx', feed))
            features, pooled = segment(feed)
            written.append(export_onnx(head, out / f'head_{k}.onnx', pooled))
            feed = features
    for path in written:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the ``gfde-model`` argument parser."""
    parser = argparse.ArgumentParser(prog='gfde-model', description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    info = sub.add_parser('info', help='validate a bundle and print what it holds')
    info.add_argument('bundle', nargs='?', default=None,
                      help='.gfde file (default: the model embedded in the package)')
    info.add_argument('--json', action='store_true', help='print JSON')
    info.set_defaults(func=_cmd_info)
    lst = sub.add_parser('list', help='list the registry variants with size and cost')
    lst.add_argument('--json', action='store_true', help='print JSON')
    lst.set_defaults(func=_cmd_list)
    exp = sub.add_parser('export-onnx', help='export deployable segments and heads to ONNX')
    exp.add_argument('bundle', help='.gfde file')
    exp.add_argument('directory', help='output directory')
    exp.set_defaults(func=_cmd_export)
    return parser


def main(argv=None) -> int:
    """Run ``gfde-model``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GfdeError as exc:
        print(f'gfde-model: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
