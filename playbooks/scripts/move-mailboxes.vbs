' ===========================================================================
' move-mailboxes.vbs: mailbox moves of the migration, run on new-sbs.
'
'   cscript //nologo move-mailboxes.vbs /move GROUP SERVER [HH:MM]
'       Moves the mailbox of every member of the security group GROUP to the
'       first mailbox store of SERVER. Members already on SERVER are skipped,
'       so running it again after an interruption only moves what is left.
'       With HH:MM (the cutoff, local time of the server): no mailbox move is
'       started between HH:MM and 18:00, so that a batch ends before the
'       customer's business hours even when it runs slower than estimated;
'       the move that is running at the cutoff finishes. The rest is moved
'       when the step runs again on the next night.
'       Exit code: the number of mailboxes that failed (0 = all moved), or
'       250 when the cutoff stopped the batch before every mailbox moved.
'       Needs the Exchange 2003 management tools (CDOEXM) and credentials
'       that reach both servers: run it through job.cmd.
'   cscript //nologo move-mailboxes.vbs /verify GROUP SERVER
'       Exit code: the number of members whose mailbox is not on SERVER.
'   cscript //nologo move-mailboxes.vbs /remaining SERVER
'       Lists every user mailbox still on SERVER. Exit code: their number.
'
' Mailboxes move one at a time with CDOEXM IMailboxStore.MoveMailbox (the
' scriptable form of the Exchange 2003 Move Mailbox wizard; KB 821829).
' All directory reads go to the domain controller this script runs on.
' ===========================================================================
Option Explicit

Dim dc, rootDse, defaultNc, configNc
dc = CreateObject("WScript.Network").ComputerName
Set rootDse = GetObject("LDAP://" & dc & "/RootDSE")
defaultNc = rootDse.Get("defaultNamingContext")
configNc = rootDse.Get("configurationNamingContext")

Dim args
Set args = WScript.Arguments
If args.Count < 2 Then Usage

Select Case LCase(args(0))
    Case "/move"
        If args.Count = 3 Then
            WScript.Quit MoveGroup(args(1), args(2), "")
        ElseIf args.Count = 4 Then
            WScript.Quit MoveGroup(args(1), args(2), args(3))
        Else
            Usage
        End If
    Case "/verify"
        If args.Count <> 3 Then Usage
        WScript.Quit VerifyGroup(args(1), args(2))
    Case "/remaining"
        If args.Count <> 2 Then Usage
        WScript.Quit Remaining(args(1))
    Case Else
        Usage
End Select

Sub Usage()
    WScript.Echo "usage: move-mailboxes.vbs /move GROUP SERVER [HH:MM] | /verify GROUP SERVER | /remaining SERVER"
    WScript.Quit 255
End Sub

' Runs an LDAP query on the local domain controller; returns the recordset.
Function Query(base, filter, attrs)
    Dim conn, cmd
    Set conn = CreateObject("ADODB.Connection")
    conn.Provider = "ADsDSOObject"
    conn.Open "Active Directory Provider"
    Set cmd = CreateObject("ADODB.Command")
    Set cmd.ActiveConnection = conn
    cmd.Properties("Page Size") = 500
    cmd.CommandText = "<LDAP://" & dc & "/" & base & ">;" & filter & ";" & attrs & ";subtree"
    Set Query = cmd.Execute
End Function

' The distinguished name of the first mailbox store on SERVER, or "".
Function StoreOf(server)
    Dim rs, dn
    StoreOf = ""
    Set rs = Query(configNc, "(objectCategory=msExchPrivateMDB)", "distinguishedName")
    Do Until rs.EOF
        dn = rs.Fields("distinguishedName").Value
        If InStr(1, dn, ",CN=" & server & ",CN=Servers,", vbTextCompare) > 0 Then
            StoreOf = dn
            Exit Function
        End If
        rs.MoveNext
    Loop
End Function

' True when the homeMDB distinguished name belongs to SERVER.
Function OnServer(homeMdb, server)
    OnServer = InStr(1, homeMdb, ",CN=" & server & ",CN=Servers,", vbTextCompare) > 0
End Function

' The member distinguished names of the group with this sAMAccountName.
Function Members(group)
    Dim rs, g, m, list
    Set rs = Query(defaultNc, "(&(objectCategory=group)(sAMAccountName=" & group & "))", "distinguishedName")
    If rs.EOF Then
        WScript.Echo "Group " & group & " not found."
        WScript.Quit 254
    End If
    Set g = GetObject("LDAP://" & dc & "/" & rs.Fields("distinguishedName").Value)
    list = Array()
    For Each m In g.Members
        ReDim Preserve list(UBound(list) + 1)
        list(UBound(list)) = m.Get("distinguishedName")
    Next
    Members = list
End Function

' The homeMDB of a user, or "" when the user has no mailbox.
Function HomeMdbOf(userDn)
    Dim u
    On Error Resume Next
    Set u = GetObject("LDAP://" & dc & "/" & userDn)
    HomeMdbOf = ""
    HomeMdbOf = u.Get("homeMDB")
    Err.Clear
End Function

' True when it is past the cutoff HH:MM and before 18:00 (the evening start).
Function PastCutoff(cutoff)
    Dim t
    PastCutoff = False
    If cutoff = "" Then Exit Function
    t = TimeValue(Now)
    PastCutoff = (t >= TimeValue(cutoff)) And (t < TimeValue("18:00"))
End Function

Function MoveGroup(group, server, cutoff)
    Dim target, userDn, home, person, mailbox, failures, moved, skipped, stopped
    target = StoreOf(server)
    If target = "" Then
        WScript.Echo "No mailbox store found on " & server & "."
        WScript.Quit 253
    End If
    WScript.Echo "Target store: " & target
    failures = 0 : moved = 0 : skipped = 0 : stopped = 0
    If cutoff <> "" Then WScript.Echo "Cutoff: no move starts between " & cutoff & " and 18:00"
    For Each userDn In Members(group)
        home = HomeMdbOf(userDn)
        If home = "" Then
            WScript.Echo "SKIP (no mailbox) " & userDn
            skipped = skipped + 1
        ElseIf OnServer(home, server) Then
            WScript.Echo "SKIP (already on " & server & ") " & userDn
            skipped = skipped + 1
        ElseIf PastCutoff(cutoff) Then
            WScript.Echo "LEFT (cutoff " & cutoff & " reached) " & userDn
            stopped = stopped + 1
        Else
            WScript.Echo Now & " MOVE " & userDn
            On Error Resume Next
            Set person = CreateObject("CDO.Person")
            person.DataSource.Open "LDAP://" & dc & "/" & userDn
            Set mailbox = person.GetInterface("IMailboxStore")
            mailbox.MoveMailbox "LDAP://" & dc & "/" & target
            If Err.Number <> 0 Then
                WScript.Echo "FAILED " & userDn & ": 0x" & Hex(Err.Number) & " " & Err.Description
                failures = failures + 1
                Err.Clear
            Else
                moved = moved + 1
            End If
            On Error GoTo 0
        End If
    Next
    WScript.Echo Now & " moved " & moved & ", skipped " & skipped & ", failed " & failures & ", left for the next night " & stopped
    If failures = 0 And stopped > 0 Then
        MoveGroup = 250
    Else
        MoveGroup = failures
    End If
End Function

Function VerifyGroup(group, server)
    Dim userDn, home, missing
    missing = 0
    For Each userDn In Members(group)
        home = HomeMdbOf(userDn)
        If home <> "" And Not OnServer(home, server) Then
            WScript.Echo "NOT ON " & server & ": " & userDn
            missing = missing + 1
        End If
    Next
    WScript.Echo missing & " mailbox(es) of " & group & " not on " & server
    VerifyGroup = missing
End Function

Function Remaining(server)
    Dim rs, count
    count = 0
    Set rs = Query(defaultNc, "(&(objectCategory=person)(objectClass=user)(homeMDB=*))", "distinguishedName,homeMDB")
    Do Until rs.EOF
        If OnServer(rs.Fields("homeMDB").Value, server) Then
            WScript.Echo "STILL ON " & server & ": " & rs.Fields("distinguishedName").Value
            count = count + 1
        End If
        rs.MoveNext
    Loop
    WScript.Echo count & " user mailbox(es) still on " & server
    Remaining = count
End Function
