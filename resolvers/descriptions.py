"""Descriptions of what was written before every name had to carry one.

New types, fields, arguments and enum values take their description where they are declared; this catalogue
only fills in those still without one, so it never overrides a description written in the code.
tests/test_descriptions.py fails when anything in schema.graphql has none.
"""

from __future__ import annotations

import re

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
)

ID = "Opaque global id (Relay): stable, and the cache key clients normalise on (Apollo, Relay, urql)."
DATABASE_ID = "The numeric id, as the exports and the CSV importer use it."

DESCRIPTIONS: dict[str, str] = {
    # --- enums ------------------------------------------------------------------------------------------
    "AccessDecision": "The answer to an access request.",
    "AccessDecision.GRANT": "Let the requester see your profile and progress (until revoked or expired).",
    "AccessDecision.DENY": "Refuse; the requester may ask again later.",
    "AccessRequestStatus": "Where an access request stands.",
    "AccessRequestStatus.PENDING": "Waiting for the subject's answer.",
    "AccessRequestStatus.GRANTED": "The subject agreed: the requester sees their profile and progress.",
    "AccessRequestStatus.DENIED": "The subject refused.",
    "AccessRequestStatus.REVOKED": "Granted once, then withdrawn by the subject.",
    "AccountStatus": "Whether an account may sign in.",
    "AccountStatus.ACTIVE": "Signs in and is listed as usual.",
    "ActivityKind": "What happened, in a learner's activity feed.",
    "ActivityKind.STEP_COMPLETED": "A course step was completed.",
    "ActivityKind.DISCUSSION_POST": "A post in a course discussion.",
    "ActivityKind.SUBMISSION": "Work handed in on an assignment.",
    "ActivityKind.REVIEW": "A mentor reviewed the learner's work.",
    "ExportFormat": "File format of an export.",
    "ExportFormat.CSV": "Comma-separated values, UTF-8.",
    "ExportFormat.XLSX": "An Excel workbook.",
    "GroupRole": "A role in a group; LEADER, MENTOR and ANALYST apply to the whole subtree below the group.",
    "GroupRole.LEADER": "Manages the group and its subtree: members, roles, reports.",
    "GroupRole.MENTOR": "Follows and reviews the work of the members of the group and its subtree.",
    "GroupRole.ANALYST": "Reads reports and progress of the group and its subtree (site admins assign it).",
    "GroupRole.MEMBER": "A learner in the group.",
    "LicenceType": "The kind of gateway licence that links an external user to a pupil.",
    "LicenceType.PARENT_GUARDIAN": "A parent or guardian.",
    "LicenceType.PUPIL": "The pupil's own gateway account.",
    "LicenceType.OTHER": "Any other licence.",
    "ProgressEventKind": "The kind of a progress event sent by the learning platform.",
    "SiteRole": "A role over the whole site.",
    "SiteRole.OWNER": "Runs the site; only an owner grants or removes OWNER.",
    "SiteRole.ADMIN": "Administers every account, group and course.",
    "StatisticsInterval": "The width of each bucket of a statistics series.",
    "StatisticsInterval.DAY": "One bucket per day (UTC).",
    "StatisticsInterval.WEEK": "One bucket per week, starting Monday (UTC).",
    "StatisticsInterval.MONTH": "One bucket per calendar month (UTC).",
    "StepKind": "What a course step is.",
    "StepKind.LESSON": "Content to read or watch.",
    "StepKind.QUIZ": "Graded automatically (maxPoints).",
    "StepKind.ASSIGNMENT": "Work handed in and graded by a mentor (a Submission).",
    "SubmissionStatus": "Whether a submission has been graded.",
    "SubmissionStatus.NEEDS_REVIEW": "Waiting for a mentor.",
    "SubmissionStatus.REVIEWED": "Graded: points and feedback are set.",
    "UserKind": "The kind of account.",
    # --- objects ----------------------------------------------------------------------------------------
    "AccessRequest.message": "The requester's note to the subject.",
    "AccessRequest.requester": "Who asked.",
    "AccessRequest.status": "Where the request stands.",
    "ActivityEvent": "One entry of a learner's activity feed.",
    "ActivityEvent.course": "The course it happened in, if any.",
    "ActivityEvent.kind": "What happened.",
    "ActivityEvent.occurredAt": "When it happened.",
    "ActivityEvent.step": "The step it concerns, if any.",
    "ApiTokenPayload": "A new API token.",
    "ApiTokenPayload.expiresAt": "When the token stops working; null: never.",
    "ApiTokenPayload.name": "The name given to the token.",
    "AuditEvent": "One recorded change (or export download), kept when its actor or target is deleted.",
    "AuditEvent.occurredAt": "When it happened.",
    "AuditEvent.targetId": "The database id of what was changed, if any.",
    "AuditEvent.targetType": "The kind of thing changed (user, group, membership ...).",
    "Course": "A course of the catalogue: an ordered list of steps.",
    "Course.name": "The course's name.",
    "Course.stepCount": "How many steps the course has.",
    "CourseProgress.course": "The course.",
    "CourseProgress.stepCount": "Steps in the course.",
    "CourseProgress.stepsCompleted": "Steps this learner completed.",
    "CourseSummary": "One course's figures within a group's progress summary.",
    "CourseSummary.completedCount": "Learners who completed the course.",
    "CourseSummary.course": "The course.",
    "CourseSummary.enrolledCount": "Learners enrolled in the course.",
    "Group": "A group in an organisation's tree (district, school, class, company, team).",
    "Group.children": "The groups directly below this one that the caller may see, by name.",
    "Group.description": "Free text about the group.",
    "Group.memberCount(includeNested)": "Also count the memberships of every group below this one.",
    "Group.members(includeNested)": "Also list the memberships of every group below this one.",
    "Group.members(roles)": "Only memberships with one of these roles.",
    "Group.name": "The group's name.",
    "Group.progressExportUrl(format)": "CSV (default) or XLSX.",
    "Group.progressReport(courseId)": "Only rows of this course.",
    "Group.progressReport(includeNested)": "Also the members of every group below this one (default true).",
    "Group.progressSummary": "Learner count and per-course figures of the group, from one statement.",
    "Group.progressSummary(includeNested)": "Also the members of every group below this one (default true).",
    "GroupProgressSummary": "A group's progress in figures: its learners and, per course, enrolled and completed.",
    "GuardianLink.createdAt": "When the link was made.",
    "GuardianLink.externalUser": "The external user (a parent or guardian).",
    "GuardianLink.licenceType": "The licence the link is for.",
    "GuardianLink.pupil": "The pupil (a LEARNER).",
    "ImportReport.dryRun": "true: only checked, nothing applied.",
    "ImportReport.errors": "Every error found; when there is any, nothing was applied.",
    "ImportReport.rowCount": "Data rows read.",
    "ImportRowError": "One error of an import, where it is in the file.",
    "ImportRowError.column": "The column name, when one column is at fault.",
    "ImportRowError.message": "What is wrong.",
    "LoginBucket": "Sign-ins within one interval.",
    "LoginBucket.failedLogins": "Failed sign-in attempts.",
    "LoginBucket.logins": "Successful sign-ins.",
    "LoginBucket.start": "Start of the interval (UTC).",
    "LoginBucket.uniqueUsers": "Distinct users who signed in, each counted once.",
    "LoginPayload": "A new session.",
    "LoginPayload.expiresAt": "When the session ends.",
    "LoginPayload.user": "The signed-in user.",
    "LoginStatistics": "Sign-ins over a period, in buckets.",
    "LoginStatistics.buckets": "One bucket per interval, oldest first.",
    "LoginStatistics.totalLogins": "Successful sign-ins over the whole period.",
    "Membership": "A user's role in a group.",
    "Membership.group": "The group.",
    "Membership.role": "The role held.",
    "Membership.user": "The member.",
    "Mutation": "Every change; each mutation is one transaction, audited.",
    "Node": "Anything with a global id, fetched again with node(id:).",
    "PageInfo": "Where a page lies in its list (Relay).",
    "PageInfo.endCursor": "Cursor of the last edge; pass as `after` for the next page.",
    "PageInfo.hasNextPage": "More edges follow this page.",
    "PageInfo.hasPreviousPage": "More edges come before this page (paging backwards: exact; forwards: after was given).",
    "PageInfo.startCursor": "Cursor of the first edge; pass as `before` (with `last`) for the previous page.",
    "ProgressReportRow.activatedAt": "When the enrollment started.",
    "ProgressReportRow.company": "The learner's company.",
    "ProgressReportRow.completedAt": "When the course was completed, if it was.",
    "ProgressReportRow.courseName": "The course.",
    "ProgressReportRow.email": "The learner's email.",
    "ProgressReportRow.expiresAt": "When access to the course ends, if it does.",
    "ProgressReportRow.firstName": "The learner's first name.",
    "ProgressReportRow.groupName": "The group the membership is in.",
    "ProgressReportRow.lastName": "The learner's last name.",
    "ProgressReportRow.percentCompleted": "Steps completed, in percent of the course's steps.",
    "ProgressReportRow.percentViewed": "Steps viewed, in percent of the course's steps.",
    "ProgressReportRow.user": "The learner.",
    "Query": "Every read.",
    "Query.group": "A group by id; null when it does not exist or the caller may not see it.",
    "Query.node": "Any object by global id; null when it does not exist or the caller may not see it.",
    "Query.user": "A user by id; null when they do not exist or the caller may not see them.",
    "Query.users": "Site admins: every account, filtered and ordered (keyset pages both ways).",
    "Step": "One step of a course.",
    "Step.course": "The course the step belongs to.",
    "Step.kind": "Lesson, quiz or assignment.",
    "Step.title": "The step's title.",
    "StepProgress": "One learner's progress on one step.",
    "StepProgress.completedAt": "When the step was completed, if it was.",
    "StepProgress.step": "The step.",
    "StepProgress.viewedAt": "When the step was first viewed, if it was.",
    "Submission.body": "The work handed in.",
    "Submission.course": "The course of the step.",
    "Submission.feedback": "The reviewer's feedback.",
    "Submission.points": "Points given by the reviewer.",
    "Submission.reviewedAt": "When it was reviewed.",
    "Submission.status": "Waiting for review, or reviewed.",
    "Submission.step": "The assignment step.",
    "Submission.submittedAt": "When it was handed in.",
    "Submission.user": "Who handed it in.",
    "User": "An account: staff, learner or external user.",
    "User.company": "The company the user works for (as reports show it).",
    "User.email": "The sign-in email.",
    "User.firstName": "First name.",
    "User.kind": "Staff, learner or external.",
    "User.lastLoginAt": "The last successful sign-in, if any.",
    "User.lastName": "Last name.",
    "User.loginCount": "Successful sign-ins so far.",
    "User.roles": "Site roles (OWNER, ADMIN, GROUP_ANALYST).",
    "User.status": "ACTIVE or DENIED.",
    "User.title": "A title such as Dr or Ms.",
    "User.courseProgress(courseIds)": "Only these courses.",
    # --- inputs -----------------------------------------------------------------------------------------
    "CreateGroupInput": "A new group.",
    "CreateGroupInput.description": "Free text about the group.",
    "CreateGroupInput.name": "The group's name.",
    "CreateUserInput": "A new account.",
    "CreateUserInput.company": "The company the user works for.",
    "CreateUserInput.email": "The sign-in email (unique, any case).",
    "CreateUserInput.externalId": "The id of the account in another system (unique), as imports use it.",
    "CreateUserInput.firstName": "First name.",
    "CreateUserInput.kind": "Staff, learner or external.",
    "CreateUserInput.lastName": "Last name.",
    "CreateUserInput.title": "A title such as Dr or Ms.",
    "ProgressEventInput": "One progress event from the learning platform.",
    "ProgressEventInput.body": "The work (SUBMITTED) or the post (DISCUSSION_POST).",
    "ProgressEventInput.courseId": "The course (DISCUSSION_POST).",
    "ProgressEventInput.kind": "What happened.",
    "ProgressEventInput.stepId": "The step (VIEWED, COMPLETED, SUBMITTED).",
    "ProgressEventInput.userId": "The learner.",
    "StepInput": "One step of a new course.",
    "StepInput.kind": "Lesson, quiz or assignment.",
    "StepInput.title": "The step's title.",
    "UpdateGroupInput": "Changes to a group; fields left out stay as they are.",
    "UpdateUserInput.company": "The company the user works for.",
    "UpdateUserInput.email": "The sign-in email (unique, any case).",
    "UpdateUserInput.externalId": "The id of the account in another system (unique), as imports use it.",
    "UpdateUserInput.firstName": "First name.",
    "UpdateUserInput.lastName": "Last name.",
    "UpdateUserInput.title": "A title such as Dr or Ms.",
    "UpdateGroupInput.description": "Free text about the group.",
    "UpdateGroupInput.name": "The group's new name.",
    "UserFilter": "Which users to list; every condition given must hold.",
    "UserFilter.kinds": "Only these kinds of account.",
    "UserFilter.licenceType": "Only external users holding a link of this licence type.",
    "UserFilter.roles": "Only users holding one of these site roles.",
    "UserFilter.status": "Only accounts with this status.",
    # --- arguments --------------------------------------------------------------------------------------
    "Query.group(id)": "The group's global id.",
    "Query.groups(roots)": "Only the top group of each tree the caller sees.",
    "Query.incomingAccessRequests(status)": "Only requests with this status.",
    "Query.loginStatistics(from)": "Start of the period (inclusive).",
    "Query.loginStatistics(interval)": "Bucket width (default DAY).",
    "Query.loginStatistics(licenceType)": "Only sign-ins of external users holding this licence type.",
    "Query.loginStatistics(to)": "End of the period (exclusive).",
    "Query.node(id)": "A global id.",
    "Query.outgoingAccessRequests(status)": "Only requests with this status.",
    "Query.user(id)": "The user's global id.",
    "Query.users(filter)": "Which users to list.",
    "Query.users(orderBy)": "The order (default: last name, ascending); ties are broken by id.",
    "Mutation.addMembers(groupId)": "The group.",
    "Mutation.addMembers(role)": "The role given to every user.",
    "Mutation.addMembers(userIds)": "The users to add.",
    "Mutation.cancelAccessRequest(id)": "One of the caller's pending requests.",
    "Mutation.changeMemberRole": "Gives a membership another role (the rules of addMembers apply to the new role).",
    "Mutation.changeMemberRole(membershipId)": "The membership.",
    "Mutation.changeMemberRole(role)": "The new role.",
    "Mutation.createApiToken": "A long-lived token for scripts and integrations; shown once.",
    "Mutation.createApiToken(expiresInDays)": "Lifetime in days.",
    "Mutation.createApiToken(name)": "A name to recognise the token by.",
    "Mutation.createCourse(name)": "The course's name.",
    "Mutation.createCourse(steps)": "The steps, in order.",
    "Mutation.createGroup(input)": "The new group.",
    "Mutation.createUser": "Creates an account (site admins).",
    "Mutation.createUser(input)": "The new account.",
    "Mutation.deleteGroup(deleteNested)": "Also delete every group below it; without it, a group with nested groups is refused (CONFLICT).",
    "Mutation.deleteGroup(id)": "The group.",
    "Mutation.deleteMyAccount(password)": "The caller's password, to confirm.",
    "Mutation.deleteUsers(userIds)": "The users to delete.",
    "Mutation.emailUsers(body)": "The message (plain text).",
    "Mutation.emailUsers(subject)": "The subject line.",
    "Mutation.emailUsers(userIds)": "The recipients.",
    "Mutation.enroll(courseId)": "The course.",
    "Mutation.enroll(expiresAt)": "When access ends (none: never).",
    "Mutation.enroll(userIds)": "The learners.",
    "Mutation.importGroupAssignments(dryRun)": "Only check the file; apply nothing.",
    "Mutation.importGroupAssignments(file)": "The CSV (student_id, groups), sent as a multipart upload.",
    "Mutation.linkGuardian(externalUserId)": "The external user (kind EXTERNAL).",
    "Mutation.linkGuardian(licenceType)": "The licence the link is for.",
    "Mutation.linkGuardian(pupilId)": "The pupil (a LEARNER).",
    "Mutation.logout": "Ends the session (or revokes the API token) the request was signed in with.",
    "Mutation.recordProgress(events)": "The events, applied all or none.",
    "Mutation.removeMembers": "Removes memberships the caller may remove; returns how many were removed.",
    "Mutation.removeMembers(membershipIds)": "The memberships.",
    "Mutation.requestAccess(email)": "The email of the person whose data you ask to see.",
    "Mutation.requestAccess(message)": "A note to them.",
    "Mutation.respondToAccessRequest(decision)": "GRANT or DENY.",
    "Mutation.respondToAccessRequest(id)": "A pending request for the caller's data.",
    "Mutation.reviewSubmission(feedback)": "Feedback for the learner.",
    "Mutation.reviewSubmission(id)": "The submission.",
    "Mutation.reviewSubmission(points)": "Points, from 0 to the step's maxPoints.",
    "Mutation.revokeAccess(id)": "A request the caller granted.",
    "Mutation.setAccountStatus(status)": "The new status.",
    "Mutation.setAccountStatus(userIds)": "The accounts.",
    "Mutation.setSiteRoles(roles)": "The complete new set of site roles.",
    "Mutation.setSiteRoles(userId)": "The user.",
    "Mutation.unlinkGuardian(id)": "The guardian link.",
    "Mutation.updateGroup(id)": "The group.",
    "Mutation.updateUser": "Edits an account's profile, placement or password (audited as user.update; a new "
    "password ends the user's sessions and API tokens).",
    "Mutation.updateUser(id)": "The account.",
    "Mutation.updateUser(input)": "The changes; fields left out stay as they are.",
    "Query.unassignedActiveStudentCount(scopeGroupId)": "Count the accounts homed in this group's subtree "
    "(required for a LEADER: a group they lead).",
    "Mutation.updateGroup(input)": "The changes.",
}

_CONNECTION = re.compile(r"(\w+)Connection$")
_EDGE = re.compile(r"(\w+)Edge$")


def _words(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def _generic(type_name: str, field: str | None) -> str | None:
    """Descriptions that follow from the Relay conventions."""
    connection, edge = _CONNECTION.fullmatch(type_name), _EDGE.fullmatch(type_name)
    if connection:
        thing = _words(connection.group(1))
        return {
            None: f"A page of a list of {thing} items (Relay connection, keyset pages both ways).",
            "edges": "The page's edges, in the list's order.",
            "pageInfo": "Cursors of the page's ends and whether more lie either side.",
            "totalCount": "How many the whole list holds (every page), with the same filters.",
        }.get(field)
    if edge:
        thing = _words(edge.group(1))
        return {
            None: f"One {thing} in a page, with its cursor.",
            "cursor": "Opaque cursor of this edge, for `after` or `before` of the same list (and only that list).",
            "node": f"The {thing}.",
        }.get(field)
    return {"id": ID, "databaseId": DATABASE_ID, "createdAt": "When it was created."}.get(field or "")


def describe(schema: GraphQLSchema) -> None:
    """Fill in the descriptions still missing (from the catalogue, then the Relay conventions)."""

    def fill(target: object, key: str, type_name: str, field: str | None = None) -> None:
        if getattr(target, "description", None):
            return
        text = DESCRIPTIONS.get(key) or (_generic(type_name, field) if "(" not in key else None)
        if text:
            target.description = text  # type: ignore[attr-defined]

    for name, type_ in schema.type_map.items():
        if name.startswith("__"):
            continue
        fill(type_, name, name)
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in type_.fields.items():
                fill(field, f"{name}.{field_name}", name, field_name)
                for arg_name, arg in getattr(field, "args", {}).items():
                    fill(arg, f"{name}.{field_name}({arg_name})", name, field_name)
        if isinstance(type_, GraphQLEnumType):
            for value_name, value in type_.values.items():
                fill(value, f"{name}.{value_name}", name)
