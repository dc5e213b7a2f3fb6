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
from gfde_perception.errors import GfdeError
from gfde_perception.models import build_model, export_onnx, list_models, model_summary
from gfde_perception.models.gfde import GFDE
from gfde_perception.models.registry import GFNET_VARIANTS
import torch


def _fmt_int(n: int) -> str:
    for unit, scale in (('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if n >= scale:
            return f'{n / scale:.2f}{unit}'
    return str(n)


def segment_shapes(config) -> list:
    """Return per segment: input shape, token output shape and pooled width (batch omitted)."""
    bb = config.backbone
    layout = bb.block_layout()
    bounds = (0,) + config.blocks_per_exit
    out = []
    for k in range(config.num_exits):
        if k == 0:
            shape_in = [bb.in_chans, bb.img_size, bb.img_size]
        else:
            _, _, dim, size = layout[bounds[k] - 1]
            shape_in = [size * size, dim]
        _, _, dim, size = layout[bounds[k + 1] - 1]
        out.append({'segment': k, 'blocks': [bounds[k], bounds[k + 1]], 'input': shape_in,
                    'tokens': [size * size, dim], 'pooled': [dim]})
    return out


def bundle_info(bundle) -> dict:
    """Collect everything ``gfde-model info`` shows, JSON-ready."""
    with torch.device('meta'):  # shapes and counts only; the weights were validated on load
        model = GFDE(bundle.config)
    summary = model_summary(model)
    return {
        'name': bundle.name,
        'checksum': bundle.checksum,
        'model': bundle.config.to_dict(),
        'blocks_per_exit': list(bundle.config.blocks_per_exit),
        'segments': segment_shapes(bundle.config),
        'summary': summary,
        'gate': bundle.gate.to_dict(),
        'preprocessing': bundle.preprocessing.to_dict(),
        'labels': list(bundle.labels),
        'provenance': dict(bundle.provenance),
        'metrics': dict(bundle.metrics),
        'tensors': len(bundle.state_dict),
    }


def _print_info(info: dict, out) -> None:
    bb = info['model']['backbone']
    s = info['summary']
    kind = 'GFNet-H' if bb['hierarchical'] else 'GFNet'
    width = bb['embed_dims'] if bb['hierarchical'] else bb['embed_dim']
    depth = bb['depths'] if bb['hierarchical'] else bb['depth']
    print(f"bundle    {info['name']}  (sha256 {info['checksum'][:16]}..., "
          f"{info['tensors']} tensors)", file=out)
    print(f"backbone  {kind} {bb['img_size']}px patch {bb['patch_size']} in_chans "
          f"{bb['in_chans']} width {width} depth {depth} mlp_ratio {bb['mlp_ratio']} "
          f"filter {bb['filter_form']}", file=out)
    print(f"heads     {bb['num_classes']} classes, distillation head "
          f"{'yes' if info['model']['distill_head'] else 'no'}, exit hidden "
          f"{info['model']['exit_hidden_dim'] or 'none (linear)'}", file=out)
    print(f"params    total {_fmt_int(s['params_total'])} ({s['params_total']}), backbone "
          f"{_fmt_int(s['params_backbone'])}", file=out)
    thresholds = list(info['gate']['thresholds']) + [None]
    print('exits     k  blocks  segment in -> tokens      seg params  seg MACs  head params'
          '  head MACs  MACs to exit  threshold', file=out)
    for seg, head, thr, p, m, cum in zip(info['segments'], s['exit_heads'], thresholds,
                                         s['params_per_segment'], s['macs_per_segment'],
                                         s['macs_to_exit']):
        shapes = f"{'x'.join(map(str, seg['input']))} -> {'x'.join(map(str, seg['tokens']))}"
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
    """Return one row per registry entry: name, kind, input, params and MACs (GFNets)."""
    rows = []
    for name in list_models():
        if name not in GFNET_VARIANTS:
            rows.append({'name': name, 'kind': 'teacher'})
            continue
        with torch.device('meta'):
            model = build_model(name)
        s = model_summary(model)
        bb = model.config.backbone
        rows.append({'name': name, 'kind': 'gfnet-h' if bb.hierarchical else 'gfnet',
                     'input': [bb.in_chans, bb.img_size, bb.img_size],
                     'num_classes': bb.num_classes, 'blocks_per_exit': list(model.blocks_per_exit),
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
    print(f"{'name':15s} {'kind':8s} {'input':10s} {'classes':>7s} {'params':>8s} "
          f"{'MACs (final)':>12s}  exits at blocks")
    for r in rows:
        if r['kind'] == 'teacher':
            print(f"{r['name']:15s} teacher  (built by models/teachers.py)")
            continue
        shape = 'x'.join(map(str, r['input']))
        print(f"{r['name']:15s} {r['kind']:8s} {shape:10s} {r['num_classes']:7d} "
              f"{_fmt_int(r['params']):>8s} {_fmt_int(r['macs_to_exit'][-1]):>12s}  "
              f"{r['blocks_per_exit']}")
    return 0


def _cmd_export(args) -> int:
    bundle = load_bundle(args.bundle)
    model = bundle.build_model(deployable=True)
    out = Path(args.directory)
    out.mkdir(parents=True, exist_ok=True)
    bb = bundle.config.backbone
    x = torch.zeros(1, bb.in_chans, bb.img_size, bb.img_size)
    written = [export_onnx(model, out / 'model.onnx', x)]
    feed = x
    with torch.no_grad():
        for k, (segment, head) in enumerate(zip(model.segments, model.exit_heads)):
            written.append(export_onnx(segment, out / f'segment_{k}.onnx', feed))
            tokens, pooled = segment(feed)
            written.append(export_onnx(head, out / f'head_{k}.onnx', pooled))
            feed = tokens
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
