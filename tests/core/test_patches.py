"""Strategic merge patches merge like Kubernetes does; JSON 6902 patches find their target."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gimletd.errors import RenderError
from gimletd.models import Json6902Patch
from gimletd.rendering.patches import (
    apply_json6902_patches,
    apply_strategic_merge_patches,
    merge_key,
    strategic_merge,
)

WHERE = "staging/frontend"


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "frontend", "labels": {"app": "frontend", "tier": "web"}},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "frontend",
                            "image": "frontend:1",
                            "env": [
                                {"name": "A", "value": "1"},
                                {"name": "B", "value": "2"},
                            ],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "volumeMounts": [
                                {"name": "cache", "mountPath": "/cache"},
                                {"name": "config", "mountPath": "/etc/app"},
                            ],
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                        },
                        {"name": "sidecar", "image": "proxy:1"},
                    ],
                    "volumes": [
                        {"name": "cache", "emptyDir": {}},
                        {"name": "config", "configMap": {"name": "frontend"}},
                    ],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                }
            },
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "frontend"},
        "spec": {
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "metrics", "port": 9090},
            ]
        },
    }


def merge(original: dict[str, Any], patch_spec: dict[str, Any]) -> dict[str, Any]:
    patch = {"apiVersion": original["apiVersion"], "kind": original["kind"], **patch_spec}
    merged: dict[str, Any] = strategic_merge(original, patch, what=WHERE)
    return merged


def pod(resource: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def test_maps_merge_recursively_and_null_deletes_a_key() -> None:
    merged = merge(
        deployment(),
        {"metadata": {"labels": {"tier": None, "team": "a"}}, "spec": {"replicas": 3}},
    )
    assert merged["metadata"]["labels"] == {"app": "frontend", "team": "a"}
    assert merged["spec"]["replicas"] == 3
    assert pod(merged) == pod(deployment())


def test_containers_merge_by_name_and_new_ones_are_appended() -> None:
    merged = merge(
        deployment(),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "sidecar", "image": "proxy:2"},
                            {"name": "debug", "image": "busybox"},
                        ]
                    }
                }
            }
        },
    )
    containers = pod(merged)["containers"]
    assert [c["name"] for c in containers] == ["frontend", "sidecar", "debug"]
    assert containers[0] == pod(deployment())["containers"][0]
    assert containers[1] == {"name": "sidecar", "image": "proxy:2"}


def test_env_merges_by_name_with_delete_and_null() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "frontend",
                            "env": [
                                {"name": "A", "$patch": "delete"},
                                {
                                    "name": "B",
                                    "value": None,
                                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                                },
                                {"name": "C", "value": "3"},
                            ],
                        }
                    ]
                }
            }
        }
    }
    env = pod(merge(deployment(), patch))["containers"][0]["env"]
    assert env == [
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "C", "value": "3"},
    ]


def test_container_ports_merge_by_container_port() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "frontend",
                            "ports": [
                                {"containerPort": 80, "name": "http"},
                                {"containerPort": 9090, "name": "metrics"},
                            ],
                        }
                    ]
                }
            }
        }
    }
    ports = pod(merge(deployment(), patch))["containers"][0]["ports"]
    assert ports == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"},
        {"containerPort": 9090, "name": "metrics"},
    ]


def test_service_ports_merge_by_port() -> None:
    merged = merge(
        service(),
        {"spec": {"ports": [{"port": 80, "targetPort": 5000}, {"port": 9090, "$patch": "delete"}]}},
    )
    assert merged["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 5000}]


def test_volumes_merge_by_name_and_mounts_by_mount_path() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": "cache", "$patch": "delete"},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    ],
                    "containers": [
                        {
                            "name": "frontend",
                            "volumeMounts": [
                                {"mountPath": "/cache", "$patch": "delete"},
                                {"mountPath": "/etc/app", "readOnly": True},
                                {"mountPath": "/data", "name": "data"},
                            ],
                        }
                    ],
                }
            }
        }
    }
    merged = pod(merge(deployment(), patch))
    assert merged["volumes"] == [
        {"name": "config", "configMap": {"name": "frontend"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
    ]
    assert merged["containers"][0]["volumeMounts"] == [
        {"name": "config", "mountPath": "/etc/app", "readOnly": True},
        {"mountPath": "/data", "name": "data"},
    ]


def test_lists_without_a_merge_key_are_replaced() -> None:
    tolerations = [{"key": "b", "operator": "Equal", "value": "x"}]
    merged = merge(deployment(), {"spec": {"template": {"spec": {"tolerations": tolerations}}}})
    assert pod(merged)["tolerations"] == tolerations


def test_patch_replace_on_a_list_and_on_a_map() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"$patch": "replace"},
                        {
                            "name": "only",
                            "image": "only:1",
                            "resources": {"$patch": "replace", "limits": {"cpu": "2"}},
                        },
                    ]
                }
            }
        }
    }
    merged = pod(merge(deployment(), patch))
    assert merged["containers"] == [
        {"name": "only", "image": "only:1", "resources": {"limits": {"cpu": "2"}}}
    ]
    replaced_map = merge(
        deployment(),
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "frontend",
                                "resources": {"$patch": "replace", "requests": {"cpu": "1"}},
                            }
                        ]
                    }
                }
            }
        },
    )
    assert pod(replaced_map)["containers"][0]["resources"] == {"requests": {"cpu": "1"}}


def test_patch_delete_on_a_map_removes_the_field() -> None:
    merged = merge(deployment(), {"metadata": {"labels": {"$patch": "delete"}}})
    assert "labels" not in merged["metadata"]


def test_retain_keys_and_delete_from_primitive_list() -> None:
    original = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "finalizers": ["a", "b"]},
        "data": {"a": "1", "b": "2"},
    }
    merged = merge(
        original,
        {
            "metadata": {"name": "x", "$deleteFromPrimitiveList/finalizers": ["a"]},
            "data": {"$retainKeys": ["b", "c"], "c": "3"},
        },
    )
    assert merged["metadata"]["finalizers"] == ["b"]
    assert merged["data"] == {"b": "2", "c": "3"}


def test_finalizers_merge_as_a_set() -> None:
    original = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "finalizers": ["a"]},
    }
    merged = merge(original, {"metadata": {"finalizers": ["b", "a"]}})
    assert merged["metadata"]["finalizers"] == ["a", "b"]


def test_an_element_without_its_merge_key_is_an_error() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}
    with pytest.raises(
        RenderError, match=r"an element of spec\.template\.spec\.containers has no 'name'"
    ):
        merge(deployment(), patch)


def test_an_unknown_directive_is_an_error() -> None:
    with pytest.raises(RenderError, match=r"unknown directive \$patch: 'drop'"):
        merge(deployment(), {"metadata": {"$patch": "drop"}})


def test_merging_leaves_the_original_untouched() -> None:
    original = deployment()
    before = copy.deepcopy(original)
    merge(
        original,
        {"spec": {"template": {"spec": {"containers": [{"name": "frontend", "image": "x"}]}}}},
    )
    assert original == before


def test_merge_keys_depend_on_where_the_list_is() -> None:
    assert merge_key(("spec", "template", "spec", "containers"), "Deployment") == "name"
    assert merge_key(("spec", "containers", "ports"), "Pod") == "containerPort"
    assert merge_key(("spec", "ports"), "Service") == "port"
    assert merge_key(("spec", "ports"), "Ingress") is None
    assert merge_key(("spec", "tolerations"), "Pod") is None


# --- Applying patch texts to rendered resources ----------------------------------------------


def test_patch_documents_target_resources_by_api_version_kind_and_name() -> None:
    text = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: frontend}\n"
        "spec:\n  ports:\n  - {port: 80, targetPort: 5000}\n"
        "---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: frontend}\nspec: {replicas: 2}\n"
    )
    patched = apply_strategic_merge_patches([deployment(), service()], text, where=WHERE)
    assert patched[0]["spec"]["replicas"] == 2
    assert patched[1]["spec"]["ports"][0]["targetPort"] == 5000


def test_a_top_level_delete_removes_the_resource() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: frontend}\n$patch: delete\n"
    patched = apply_strategic_merge_patches([deployment(), service()], text, where=WHERE)
    assert [item["kind"] for item in patched] == ["Deployment"]


def test_a_patch_without_target_names_what_it_looked_for() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: backend}\nspec: {replicas: 2}\n"
    with pytest.raises(RenderError) as caught:
        apply_strategic_merge_patches([deployment(), service()], text, where=WHERE)
    message = str(caught.value)
    assert "strategic merge patches of staging/frontend" in message
    assert "targets Deployment apps/v1 backend" in message
    assert "Deployment/frontend, Service/frontend" in message


def test_a_patch_with_another_api_version_does_not_match() -> None:
    text = "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: frontend}\n"
    with pytest.raises(RenderError, match="not among the rendered resources"):
        apply_strategic_merge_patches([deployment()], text, where=WHERE)


def test_an_ambiguous_patch_needs_a_namespace() -> None:
    blue, green = service(), service()
    blue["metadata"]["namespace"] = "blue"
    green["metadata"]["namespace"] = "green"
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: frontend}\nspec: {type: NodePort}\n"
    with pytest.raises(RenderError, match=r"matches 2 resources; add metadata\.namespace"):
        apply_strategic_merge_patches([blue, green], text, where=WHERE)
    text = text.replace("{name: frontend}", "{name: frontend, namespace: green}")
    patched = apply_strategic_merge_patches([blue, green], text, where=WHERE)
    assert "type" not in patched[0]["spec"] and patched[1]["spec"]["type"] == "NodePort"


def test_a_patch_without_a_name_is_an_error() -> None:
    with pytest.raises(RenderError, match=r"needs apiVersion, kind and metadata\.name"):
        apply_strategic_merge_patches([deployment()], "kind: Deployment\n", where=WHERE)


# --- JSON 6902 -------------------------------------------------------------------------------


def json_patch(
    patch: str, kind: str, name: str = "frontend", group: str = "", version: str = ""
) -> Json6902Patch:
    return Json6902Patch.model_validate(
        {"patch": patch, "target": {"group": group, "version": version, "kind": kind, "name": name}}
    )


def test_json6902_operations_apply_to_the_target() -> None:
    patches = [
        json_patch(
            "- op: replace\n  path: /spec/replicas\n  value: 4\n"
            "- op: add\n  path: /metadata/labels/team\n  value: a\n"
            "- op: remove\n  path: /spec/template/spec/tolerations\n",
            "Deployment",
            group="apps",
            version="v1",
        ),
        json_patch('[{"op": "add", "path": "/spec/type", "value": "NodePort"}]', "Service"),
    ]
    patched = apply_json6902_patches([deployment(), service()], patches, where=WHERE)
    assert patched[0]["spec"]["replicas"] == 4
    assert patched[0]["metadata"]["labels"]["team"] == "a"
    assert "tolerations" not in pod(patched[0])
    assert patched[1]["spec"]["type"] == "NodePort"


def test_json6902_an_empty_group_means_the_core_api() -> None:
    patches = [json_patch("- {op: replace, path: /spec/replicas, value: 4}", "Deployment")]
    with pytest.raises(RenderError, match="no rendered resource matches the target"):
        apply_json6902_patches([deployment()], patches, where=WHERE)


def test_json6902_a_failing_operation_names_the_target_and_environment() -> None:
    patches = [json_patch("- {op: remove, path: /spec/missing}", "Service", version="v1")]
    with pytest.raises(RenderError) as caught:
        apply_json6902_patches([service()], patches, where=WHERE)
    assert "json6902 patch 1 of staging/frontend (target Service v1 frontend)" in str(caught.value)


def test_json6902_a_failing_test_operation_is_an_error() -> None:
    patches = [json_patch("- {op: test, path: /spec/ports/0/port, value: 81}", "Service")]
    with pytest.raises(RenderError, match="target Service"):
        apply_json6902_patches([service()], patches, where=WHERE)


def test_json6902_the_patch_must_be_a_list() -> None:
    patches = [json_patch("op: remove", "Service")]
    with pytest.raises(RenderError, match="must be a list of operations"):
        apply_json6902_patches([service()], patches, where=WHERE)


def test_json6902_leaves_the_input_untouched() -> None:
    original = [service()]
    apply_json6902_patches(
        original, [json_patch("- {op: remove, path: /spec}", "Service")], where=WHERE
    )
    assert original == [service()]
